// Dashboard: the signed-in user's balance and spend, then the usage report of
// `/api/data/stats` (admins: everyone's) or `/api/data/self/stats` — the per-hour (per-day
// beyond 7 days) rollups kept at write time: totals, requests / cost / tokens / errors over
// time, latency and time-to-first-token percentiles over time, a split by model, channel,
// platform or user, CodeSwitch's day × hour heatmap, top users and models.

import { get, query } from '../api.js';
import { h, mount, field, table, failure, num, notice } from '../dom.js';
import { timeChart } from '../chart.js';

const RANGES = { '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
/** Chart metric → (label, value of a report row). */
const METRICS = {
  requests: ['requests', (r) => r.requests],
  cost: ['cost (quota units)', (r) => r.quota],
  tokens: ['tokens', (r) => r.tokens],
  errors: ['errors', (r) => r.errors],
};
const SPLITS = [['by_model', 'model'], ['by_channel', 'channel'], ['by_platform', 'platform'], ['by_user', 'user']];

function stat(id, label, value) {
  return h('div', { class: 'stat', id }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, value));
}

const ms = (v) => (v === null || v === undefined ? '—' : `${num(Math.round(v))} ms`);
const pcts = (p) => `${ms(p && p.p50)} / ${ms(p && p.p99)}`;

export async function render(root, ctx) {
  const me = ctx.me;
  const cards = h('div', { class: 'stats', id: 'own' },
    stat('own-balance', 'Balance', ctx.money(me.quota)),
    stat('own-spend', 'Spent', ctx.money(me.used_quota)),
    stat('own-requests', 'Requests', num(me.request_count)),
    stat('own-group', 'Group', me.group || 'default'));
  const range = h('select', { id: 'dash-range' }, Object.keys(RANGES).map((k) => h('option', { value: k }, k)));
  const split = h('select', { id: 'dash-split' },
    SPLITS.filter(([k]) => k !== 'by_user' || ctx.isAdmin).map(([k, l]) => h('option', { value: k }, l)));
  const metric = h('select', { id: 'dash-metric' }, Object.entries(METRICS).map(([k, [l]]) => h('option', { value: k }, l)));
  const body = h('div', { id: 'dash-body' }, h('p', {}, 'Loading…'));
  root.append(h('h2', {}, 'Your account'), cards,
    h('div', { class: 'controls' }, field('Range', range), field('Split by', split), field('Chart and heatmap', metric)),
    body);
  let frees = [];
  const free = () => { frees.forEach((f) => f()); frees = []; };
  let report = null;

  async function load() {
    const now = Math.floor(Date.now() / 1000);
    const path = ctx.isAdmin ? '/api/data/stats' : '/api/data/self/stats';
    try {
      report = await get(path + query({ start_timestamp: now - RANGES[range.value], end_timestamp: now }));
    } catch (e) {
      free();
      mount(body, failure('Usage statistics', e));
      return;
    }
    draw();
  }

  function draw() {
    free();
    const r = report;
    const t = r.totals;
    const totals = h('div', { class: 'stats', id: 'totals' },
      stat('total-requests', 'Requests', num(t.requests)),
      stat('total-tokens', 'Tokens', num(t.tokens)),
      stat('total-cost', 'Cost', ctx.money(t.quota)),
      stat('total-errors', 'Error rate', `${((100 * t.errors) / Math.max(1, t.requests)).toFixed(1)}%`),
      stat('total-latency', 'Latency p50 / p99', pcts(t.latency_ms)),
      stat('total-ttft', 'First token p50 / p99', pcts(t.ttft_ms)));
    const step = r.bucket === 'day' ? 'day' : 'hour';
    const xs = r.series.map((s) => s.t);
    const [mLabel, mOf] = METRICS[metric.value];
    const usage = h('div', { class: 'chart', id: 'dash-chart', role: 'img', 'aria-label': `${mLabel} per ${step}` });
    const times = h('div', { class: 'chart', id: 'dash-latency', role: 'img', 'aria-label': `latency and time to first token percentiles per ${step}` });
    const splitLabel = split.selectedOptions[0].text;
    const splitSeries = (r.split_series || {})[split.value] || [];
    const bySplit = h('div', { class: 'chart', id: 'dash-split-chart', role: 'img', 'aria-label': `${mLabel} per ${step} by ${splitLabel}` });
    const any = t.requests > 0;
    mount(body, totals,
      r.trimmed ? notice('info', 'Some periods dropped their token or user split for size.') : null,
      h('h2', {}, `${mLabel[0].toUpperCase()}${mLabel.slice(1)} per ${step}`), any ? usage : notice('info', 'No usage in this range.'),
      h('h2', {}, `Latency and time to first token per ${step} (ms)`), any ? times : null,
      h('h2', {}, `By ${splitLabel}`), any && splitSeries.length ? bySplit : null, splitTable(r[split.value] || [], splitLabel, ctx),
      h('h2', {}, `${metric.value === 'cost' ? 'Cost' : 'Requests'} by day and hour (local time)`), heatmap(r.heatmap, metric.value === 'cost', ctx),
      h('div', { class: 'two' }, top(r.by_model, 'Top models', ctx, 'top-models'), ctx.isAdmin ? top(r.by_user, 'Top users', ctx, 'top-users') : null));
    if (!any) return;
    frees.push(timeChart(usage, xs, [{ label: mLabel, values: r.series.map(mOf) }], { yLabel: mLabel }));
    if (splitSeries.length) {
      // The split's largest values over time (the report keeps six), in the chosen metric.
      const rowsOf = (ss) => ss.requests.map((_, i) => ({
        requests: ss.requests[i], quota: ss.quota[i], tokens: ss.tokens[i], errors: ss.errors[i] }));
      frees.push(timeChart(bySplit, xs, splitSeries.map((ss) => ({ label: ss.name || '—', values: rowsOf(ss).map(mOf) })),
        { yLabel: mLabel }));
    }
    const pct = (k, p) => r.series.map((s) => (s[k] && s[k][p] !== undefined ? s[k][p] : null));
    frees.push(timeChart(times, xs, [
      { label: 'latency p50', values: pct('latency_ms', 'p50') },
      { label: 'latency p90', values: pct('latency_ms', 'p90') },
      { label: 'latency p99', values: pct('latency_ms', 'p99') },
      { label: 'first token p50', values: pct('ttft_ms', 'p50') },
      { label: 'first token p99', values: pct('ttft_ms', 'p99') },
    ], { yLabel: 'ms' }));
  }

  range.addEventListener('change', load);
  for (const c of [split, metric]) c.addEventListener('change', () => report && draw());
  await load();
  return free;
}

function splitTable(rows, label, ctx) {
  return table([
    [label[0].toUpperCase() + label.slice(1), (r) => r.name || '—'],
    ['Requests', (r) => num(r.requests)],
    ['Errors', (r) => `${num(r.errors)} (${num(r.errors_4xx)} 4xx, ${num(r.errors_5xx)} 5xx)`],
    ['Tokens', (r) => num(r.tokens)],
    ['Cost', (r) => ctx.money(r.quota)],
    ['Latency p50 / p90 / p99', (r) => `${ms(r.latency_ms.p50)} / ${ms(r.latency_ms.p90)} / ${ms(r.latency_ms.p99)}`],
    ['First token p50 / p99', (r) => pcts(r.ttft_ms)],
  ], rows, { empty: 'No usage in this range.', class: 'split' });
}

/** CodeSwitch's heatmap: weekday × hour (local time) of the report's UTC day-hour cells. */
function heatmap(cells, cost, ctx) {
  const grid = DAYS.map(() => new Array(24).fill(0));
  for (const c of cells || []) {
    const [y, m, d] = c.day.split('-').map(Number);
    const at = new Date(Date.UTC(y, m - 1, d, c.hour));
    grid[at.getDay()][at.getHours()] += Number(cost ? c.quota : c.requests) || 0;
  }
  const max = Math.max(1, ...grid.flat());
  const show = (v) => (v ? (cost ? ctx.money(v) : String(v)) : '');
  const head = h('tr', {}, h('th', { scope: 'col' }, ''), [...Array(24).keys()].map((x) => h('th', { scope: 'col' }, String(x))));
  const body = grid.map((row, d) => h('tr', {}, h('th', { scope: 'row' }, DAYS[d]), row.map((v, hr) => {
    const td = h('td', { title: `${DAYS[d]} ${hr}:00 — ${show(v) || 0}${cost ? '' : ' requests'}` }, cost ? (v ? '•' : '') : show(v));
    td.style.backgroundColor = v ? `rgba(37, 99, 235, ${0.15 + (0.85 * v) / max})` : '';
    if (v / max > 0.5) td.style.color = '#fff';
    return td;
  })));
  return h('div', { class: 'scroll' }, h('table', { class: 'heatmap', id: 'heatmap' }, h('thead', {}, head), h('tbody', {}, body)));
}

function top(rows, title, ctx, id) {
  const list = [...(rows || [])].sort((a, b) => b.quota - a.quota || b.requests - a.requests).slice(0, 10);
  return h('div', { id }, h('h2', {}, title), table([
    ['Name', (r) => r.name || '—'], ['Requests', (r) => num(r.requests)], ['Tokens', (r) => num(r.tokens)], ['Cost', (r) => ctx.money(r.quota)],
  ], list));
}
