// Logs: `/api/log/` (admins: everyone's) or `/api/log/self`, with NEW-API's filters and
// paging; while "Live" is on, the log stream (`/api/log/stream`, `/api/log/self/stream`:
// server-sent events pushed by a worker as records reach the ledger) tells the page a row
// came, and the first page is fetched again with new rows marked; if the stream cannot be
// had three times running, the page falls back to fetching every 2 s. A row opens its
// detail: the request and the answer from the audit trail, every field, all as text.

import { get, query, pageOf, authHeaders, eachData } from '../api.js';
import { h, mount, field, table, failure, when, num } from '../dom.js';

const TYPES = [['', 'all'], ['2', 'consume'], ['5', 'error'], ['1', 'top-up'], ['3', 'manage'], ['4', 'system']];
const PAGE_SIZE = 20;

export async function render(root, ctx) {
  const f = {
    model_name: h('input', { id: 'log-model', type: 'text' }),
    token_name: h('input', { id: 'log-token', type: 'text' }),
    username: ctx.isAdmin ? h('input', { id: 'log-user', type: 'text' }) : null,
    type: h('select', { id: 'log-type' }, TYPES.map(([v, l]) => h('option', { value: v }, l))),
  };
  const live = h('input', { id: 'log-live', type: 'checkbox', checked: true });
  const liveLabel = h('label', { class: 'check', id: 'log-live-label' }, live, ' Live');
  const list = h('div', { id: 'log-list' }, 'Loading…');
  const detail = h('div', { id: 'log-detail', 'aria-live': 'polite' });
  const pager = h('div', { class: 'pager' });
  let page = 1;
  let seen = null;
  const form = h('form', { class: 'controls', onsubmit: (e) => { e.preventDefault(); page = 1; seen = null; load(); } },
    field('Model', f.model_name), field('Token name', f.token_name), f.username ? field('User', f.username) : null, field('Type', f.type),
    h('button', { type: 'submit' }, 'Filter'),
    liveLabel);
  root.append(form, list, pager, detail);

  async function load() {
    const params = { p: page, page_size: PAGE_SIZE };
    for (const [k, el] of Object.entries(f)) if (el) params[k] = el.value.trim();
    let data;
    try {
      data = pageOf(await get((ctx.isAdmin ? '/api/log/' : '/api/log/self') + query(params)));
    } catch (e) {
      mount(list, failure('The request log', e));
      mount(pager);
      return;
    }
    const fresh = seen === null ? new Set() : new Set(data.items.map((r) => r.id).filter((id) => !seen.has(id)));
    seen = new Set([...(seen || []), ...data.items.map((r) => r.id)]);
    mount(list, table([
      ['Time', (r) => when(r.created_at)],
      ctx.isAdmin ? ['User', (r) => r.username, 'user'] : null,
      ['Token', (r) => r.token_name, 'token'],
      ['Model', (r) => r.model_name, 'model'],
      ['Channel', (r) => r.channel_name || r.channel || '—', 'channel'],
      ['Type', (r) => (TYPES.find(([v]) => v === String(r.type)) || [null, String(r.type)])[1]],
      ['Tokens in/out', (r) => `${num(r.prompt_tokens)} / ${num(r.completion_tokens)}`],
      ['Cost', (r) => ctx.money(r.quota)],
      ['Latency', (r) => (r.duration_ms !== undefined ? `${num(r.duration_ms)} ms` : r.use_time !== undefined ? `${r.use_time} s` : '—')],
      ['', (r) => h('button', { type: 'button', class: 'link', onclick: () => show(r) }, 'Details')],
    ].filter(Boolean), data.items, {
      class: 'logs',
      empty: 'No log entries.',
      rowAttrs: (r) => ({ 'data-id': r.id, class: fresh.has(r.id) ? 'fresh' : '' }),
    }));
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    mount(pager,
      h('button', { type: 'button', disabled: page <= 1, onclick: () => { page -= 1; load(); } }, 'Previous'),
      h('span', { id: 'log-pages' }, ` page ${page} of ${pages} · ${num(data.total)} entries `),
      h('button', { type: 'button', disabled: page >= pages, onclick: () => { page += 1; load(); } }, 'Next'));
  }

  /** The detail of row `r`: its fields, and the request and answer from the audit trail
   * (`/api/log/detail/:trace_id`, redacted by the server as `audit replay` redacts). */
  async function show(r) {
    const title = h('h2', {}, `Log entry ${r.id}`);
    mount(detail, h('div', { class: 'card' }, title, 'Loading…'));
    let found = null;
    let why = null;
    try {
      found = r.trace_id ? await get(`/api/log/detail/${encodeURIComponent(r.trace_id)}`) : null;
    } catch (e) {
      why = failure('The request and answer', e);
    }
    const ex = found && found.exchange;
    const answer = ex && ((ex.response && (ex.response.content || ex.response.error)) || (ex.chunks || []).join(''));
    const pre = (id, text) => h('pre', { id, class: 'answer' }, text);
    const close = h('button', { type: 'button', onclick: () => mount(detail) }, 'Close');
    mount(detail, h('div', { class: 'card', id: 'log-detail-card' },
      title,
      h('p', { class: 'muted' }, `${r.model_name || ''} · ${r.channel_name || '—'} · status ${r.status ?? '—'} · trace ${r.trace_id || '—'}`),
      h('h3', {}, 'Request'),
      ex ? pre('log-request', JSON.stringify(ex.request, null, 2)) : why || notice('info', 'The audit trail no longer holds this request (its retention dropped it), or it has none.'),
      h('h3', {}, 'Answer'),
      ex ? pre('log-answer', answer || '—') : null,
      h('details', {}, h('summary', {}, 'Every field of the log entry'),
        h('dl', { class: 'kv' }, Object.entries(r).flatMap(([k, v]) => [
          h('dt', {}, k),
          h('dd', {}, h('pre', {}, typeof v === 'object' && v !== null ? JSON.stringify(v, null, 2) : String(v))),
        ]))),
      close));
    close.focus();
  }

  await load();
  let stopped = false;
  let current = null;
  let timer = null;
  let pending = null;
  const refresh = () => { if (live.checked && page === 1 && !document.hidden) load(); };
  // Several records at once make one fetch.
  const poke = () => { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 150); };

  async function follow() {
    let failures = 0;
    while (!stopped) {
      current = new AbortController();
      try {
        const res = await fetch(ctx.isAdmin ? '/api/log/stream' : '/api/log/self/stream',
          { headers: authHeaders(), signal: current.signal, cache: 'no-store' });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        failures = 0;
        liveLabel.dataset.mode = 'push';
        await eachData(res, poke);
        // The stream ended (it lasts minutes): catch up, then follow again.
        poke();
      } catch {
        if (stopped) return;
        failures += 1;
      }
      if (stopped) return;
      if (failures >= 3) {
        liveLabel.dataset.mode = 'poll';
        timer = setInterval(refresh, 2000);
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  follow();
  return () => {
    stopped = true;
    if (current) current.abort();
    if (timer) clearInterval(timer);
    if (pending) clearTimeout(pending);
  };
}
