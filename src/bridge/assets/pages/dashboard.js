// Dashboard: the signed-in user's balance and spend, then usage over time from
// `/api/data/` (admins: everyone) or `/api/data/self`, split by model, channel or user; a
// day × hour heatmap; top users and models.

import { get, query, pageOf } from '../api.js';
import { h, mount, field, table, failure, num, notice } from '../dom.js';
import { timeChart } from '../chart.js';

const RANGES = { '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

function stat(id, label, value) {
  return h('div', { class: 'stat', id }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, value));
}

export async function render(root, ctx) {
  const me = ctx.me;
  const cards = h('div', { class: 'stats', id: 'own' });
  const showOwn = () => mount(cards,
    stat('own-balance', 'Balance', ctx.money(me.quota)),
    stat('own-spend', 'Spent', ctx.money(me.used_quota)),
    stat('own-requests', 'Requests', num(me.request_count)),
    stat('own-group', 'Group', me.group || 'default'));
  showOwn();
  const range = h('select', { id: 'dash-range' }, Object.keys(RANGES).map((k) => h('option', { value: k }, k)));
  const split = h('select', { id: 'dash-split' },
    [['model_name', 'model'], ['channel', 'channel'], ['username', 'user']].filter(([k]) => k !== 'username' || ctx.isAdmin)
      .map(([k, l]) => h('option', { value: k }, l)));
  const metric = h('select', { id: 'dash-metric' }, [['count', 'requests'], ['quota', 'cost'], ['token_used', 'tokens']].map(([k, l]) => h('option', { value: k }, l)));
  const body = h('div', { id: 'dash-body' }, h('p', {}, 'Loading…'));
  root.append(h('h2', {}, 'Your account'), cards,
    h('div', { class: 'controls' }, field('Range', range), field('Split by', split), field('Chart', metric)),
    body);
  let frees = [];
  const free = () => { frees.forEach((f) => f()); frees = []; };

  async function load() {
    free();
    const now = Math.floor(Date.now() / 1000);
    const start = now - RANGES[range.value];
    const path = ctx.isAdmin ? '/api/data/' : '/api/data/self';
    let rows;
    let source = null;
    try {
      const data = await get(path + query({ start_timestamp: start, end_timestamp: now }));
      rows = Array.isArray(data) ? data : (data && data.items) || [];
    } catch (e) {
      if (!e.unavailable) {
        mount(body, failure('Usage statistics', e));
        return;
      }
      // No /api/data here: the same figures from the request log's newest entries.
      try {
        ({ rows, source } = await fromLog(ctx, start, now));
      } catch (e2) {
        mount(body, failure('Usage statistics', e), failure('The request log', e2));
        return;
      }
    }
    draw(rows, start, now);
    if (source) body.prepend(notice('info', source));
  }

  function draw(rows, start, now) {
    const sum = (k) => rows.reduce((a, r) => a + (Number(r[k]) || 0), 0);
    const requests = sum('count');
    const errors = rows.some((r) => 'error_count' in r) ? sum('error_count') : null;
    const weighted = (k) => {
      const have = rows.filter((r) => typeof r[k] === 'number' && r.count > 0);
      if (!have.length) return null;
      const n = have.reduce((a, r) => a + r.count, 0);
      return have.reduce((a, r) => a + r[k] * r.count, 0) / n;
    };
    const latency = weighted('latency_ms');
    const ttft = weighted('ttft_ms');
    const totals = h('div', { class: 'stats', id: 'totals' },
      stat('total-requests', 'Requests', num(requests)),
      stat('total-tokens', 'Tokens', num(sum('token_used'))),
      stat('total-cost', 'Cost', ctx.money(sum('quota'))),
      stat('total-errors', 'Error rate', errors === null ? 'not reported' : `${((100 * errors) / Math.max(1, requests)).toFixed(1)}%`),
      stat('total-latency', 'Mean latency', latency === null ? 'not reported' : `${Math.round(latency)} ms`),
      stat('total-ttft', 'Mean TTFT', ttft === null ? 'not reported' : `${Math.round(ttft)} ms`));
    // Hourly buckets over the range, one series per split value (the six largest).
    const hour = 3600;
    const first = Math.floor(start / hour) * hour;
    const xs = [];
    for (let t = first; t <= now; t += hour) xs.push(t);
    const key = split.value;
    const byKey = new Map();
    for (const r of rows) {
      const k = String(r[key] ?? r[key === 'channel' ? 'channel_id' : key] ?? '—');
      byKey.set(k, (byKey.get(k) || 0) + (Number(r[metric.value]) || 0));
    }
    const keys = [...byKey.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k]) => k);
    const series = keys.map((k) => ({ label: k, values: xs.map(() => 0) }));
    for (const r of rows) {
      const k = String(r[key] ?? r[key === 'channel' ? 'channel_id' : key] ?? '—');
      const i = keys.indexOf(k);
      const j = Math.floor((Number(r.created_at) - first) / hour);
      if (i >= 0 && j >= 0 && j < xs.length) series[i].values[j] += Number(r[metric.value]) || 0;
    }
    const chart = h('div', { class: 'chart', id: 'dash-chart', role: 'img', 'aria-label': `${metric.selectedOptions[0].text} per hour by ${split.selectedOptions[0].text}` });
    mount(body, totals, h('h2', {}, 'Over time'), rows.length ? chart : notice('info', 'No usage in this range.'),
      h('h2', {}, 'Requests by day and hour'), heatmap(rows),
      h('div', { class: 'two' }, top(rows, 'model_name', 'Top models', ctx), ctx.isAdmin ? top(rows, 'username', 'Top users', ctx) : null));
    if (rows.length) frees.push(timeChart(chart, xs, series, { yLabel: metric.selectedOptions[0].text }));
  }

  for (const c of [range, split, metric]) c.addEventListener('change', load);
  await load();
  return free;
}

function heatmap(rows) {
  const grid = DAYS.map(() => new Array(24).fill(0));
  for (const r of rows) {
    const d = new Date(Number(r.created_at) * 1000);
    grid[d.getDay()][d.getHours()] += Number(r.count) || 0;
  }
  const max = Math.max(1, ...grid.flat());
  const head = h('tr', {}, h('th', { scope: 'col' }, ''), [...Array(24).keys()].map((x) => h('th', { scope: 'col' }, String(x))));
  const body = grid.map((row, d) => h('tr', {}, h('th', { scope: 'row' }, DAYS[d]), row.map((v, hr) => {
    const td = h('td', { title: `${DAYS[d]} ${hr}:00 — ${v} requests` }, v ? String(v) : '');
    td.style.backgroundColor = v ? `rgba(37, 99, 235, ${0.15 + (0.85 * v) / max})` : '';
    if (v / max > 0.5) td.style.color = '#fff';
    return td;
  })));
  return h('div', { class: 'scroll' }, h('table', { class: 'heatmap', id: 'heatmap' }, h('thead', {}, head), h('tbody', {}, body)));
}

function top(rows, key, title, ctx) {
  const agg = new Map();
  for (const r of rows) {
    const k = String(r[key] ?? '—');
    const a = agg.get(k) || { name: k, count: 0, quota: 0, tokens: 0 };
    a.count += Number(r.count) || 0;
    a.quota += Number(r.quota) || 0;
    a.tokens += Number(r.token_used) || 0;
    agg.set(k, a);
  }
  const list = [...agg.values()].sort((a, b) => b.quota - a.quota || b.count - a.count).slice(0, 10);
  return h('div', {}, h('h2', {}, title), table([
    ['Name', (r) => r.name], ['Requests', (r) => num(r.count)], ['Tokens', (r) => num(r.tokens)], ['Cost', (r) => ctx.money(r.quota)],
  ], list));
}

/** Most log entries the dashboard reads when the server has no `/api/data`. */
const LOG_LIMIT = 2000;

/** Usage rows (`/api/data`'s shape, one per request) from the request log. */
async function fromLog(ctx, start, now) {
  const path = ctx.isAdmin ? '/api/log/' : '/api/log/self';
  const rows = [];
  let total = 0;
  let read = 0;
  for (let p = 1; read < LOG_LIMIT; p += 1) {
    const page = pageOf(await get(path + query({ p, page_size: 100, start_timestamp: start, end_timestamp: now })));
    total = page.total;
    read += page.items.length;
    for (const r of page.items) {
      if (r.type !== 2 && r.type !== 5) continue; // top-ups and quota changes are no requests
      rows.push({
        created_at: r.created_at, model_name: r.model_name, channel: r.channel_name || r.channel, username: r.username,
        count: 1, quota: r.quota, token_used: (Number(r.prompt_tokens) || 0) + (Number(r.completion_tokens) || 0),
        error_count: Number(r.status) >= 400 ? 1 : 0, latency_ms: Number(r.duration_ms ?? r.use_time * 1000),
      });
    }
    if (page.items.length < 100 || read >= total) break;
  }
  const note = read < total ? `the newest ${num(read)} of ${num(total)} entries` : `all ${num(total)} entries`;
  return { rows, source: `Computed from the request log (${num(rows.length)} requests in ${note}): this server has no /api/data.` };
}
