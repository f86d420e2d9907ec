// Models & prices: `/api/pricing` (NEW-API's price table); models the channels serve
// (`/v1/models`, with the session's API token) without a price are flagged.

import { get, session, isApiToken } from '../api.js';
import { h, mount, table, failure, notice } from '../dom.js';

export async function render(root) {
  const list = h('div', { id: 'price-list' }, 'Loading…');
  root.append(list);
  let prices;
  try {
    const data = await get('/api/pricing');
    prices = Array.isArray(data) ? data : (data && (data.items || data.models)) || [];
  } catch (e) {
    mount(list, failure('The price table', e));
    return;
  }
  const patterns = prices.map((p) => String(p.model_name || p.model || p.pattern || ''));
  const glob = (pat) => new RegExp(`^${pat.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
  const matchers = patterns.map(glob);
  let unpriced = [];
  const s = session();
  if (isApiToken(s)) {
    try {
      const res = await fetch('/v1/models', { headers: { Authorization: `Bearer ${s.token}` } });
      const body = await res.json();
      unpriced = ((body && body.data) || []).map((m) => m.id).filter((id) => !matchers.some((m) => m.test(id)));
    } catch {
      unpriced = [];
    }
  }
  const usd = (v) => (v === undefined || v === null ? '—' : `$${Number(v)}`);
  const known = prices.length && 'input_usd_per_mtok' in prices[0];
  const cols = known
    ? [
      ['Model (pattern)', (p) => p.model_name],
      ['Input $/M tokens', (p) => usd(p.input_usd_per_mtok)],
      ['Output $/M tokens', (p) => usd(p.output_usd_per_mtok)],
      ['Cache read $/M', (p) => usd(p.cache_read_usd_per_mtok)],
      ['Cache write $/M', (p) => usd(p.cache_write_usd_per_mtok)],
      ['Model ratio', (p) => String(p.model_ratio ?? '—')],
      ['Completion ratio', (p) => String(p.completion_ratio ?? '—')],
      ['Groups', (p) => (Array.isArray(p.enable_groups) ? p.enable_groups.join(', ') : '')],
    ]
    : [...new Set(prices.flatMap((p) => Object.keys(p)))].slice(0, 8)
      .map((k) => [k, (p) => (typeof p[k] === 'object' ? JSON.stringify(p[k]) : String(p[k] ?? ''))]);
  mount(list,
    unpriced.length ? notice('error', `Served without a price: ${unpriced.join(', ')}`) : null,
    table(cols, prices, { empty: 'No prices.' }),
    h('p', { class: 'muted' }, 'Editing prices here is not available on this server yet (`ailurus prices set` changes them).'));
}
