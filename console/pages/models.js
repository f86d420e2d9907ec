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
  const priced = new Set(prices.map((p) => p.model_name || p.model || p.pattern));
  let unpriced = [];
  const s = session();
  if (isApiToken(s)) {
    try {
      const res = await fetch('/v1/models', { headers: { Authorization: `Bearer ${s.token}` } });
      const body = await res.json();
      unpriced = ((body && body.data) || []).map((m) => m.id).filter((id) => !priced.has(id));
    } catch {
      unpriced = [];
    }
  }
  const cols = [...new Set(prices.flatMap((p) => Object.keys(p)))].slice(0, 8);
  mount(list,
    unpriced.length ? notice('error', `Served without a price: ${unpriced.join(', ')}`) : null,
    table(cols.map((k) => [k, (p) => (typeof p[k] === 'object' ? JSON.stringify(p[k]) : String(p[k] ?? ''))]), prices, { empty: 'No prices.' }));
}
