// Models & prices: `/api/pricing` (NEW-API's price table). Admins edit it (PUT / DELETE
// `/api/pricing`, the PRICES bucket every worker follows) and see the channels' models that no
// price covers (`unpriced`); a token's session flags the models `/v1/models` lists without a
// price instead.

import { api, get, session, isApiToken } from '../api.js';
import { h, mount, field, table, failure, notice } from '../dom.js';

const PRICES = [
  ['input_usd_per_mtok', 'Input $/M tokens'],
  ['output_usd_per_mtok', 'Output $/M tokens'],
  ['cache_read_usd_per_mtok', 'Cache read $/M'],
  ['cache_write_usd_per_mtok', 'Cache write $/M'],
];

const glob = (pat) => new RegExp(`^${pat.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);

export async function render(root, ctx) {
  const out = h('div', { id: 'price-result', 'aria-live': 'polite' });
  const editor = h('div', { id: 'price-editor' });
  const flags = h('div', { id: 'price-flags' });
  const list = h('div', { id: 'price-list' }, 'Loading…');
  if (ctx.isAdmin) root.append(h('button', { type: 'button', id: 'price-add', onclick: () => edit(null) }, 'Add price'));
  root.append(out, editor, flags, list);

  function edit(p, pattern) {
    const v = p || {};
    const name = h('input', { id: 'price-model', type: 'text', required: true, value: v.model_name || pattern || '', disabled: !!p });
    const inputs = Object.fromEntries(PRICES.map(([k]) => [k, h('input', { id: `price-${k}`, type: 'number', min: 0, step: 'any', required: k.startsWith('input') || k.startsWith('output'), value: v[k] ?? '' })]));
    const cap = h('input', { id: 'price-max-output', type: 'number', min: 1, step: 1, placeholder: 'default', value: v.max_output_tokens ?? '' });
    mount(editor, h('form', { class: 'card controls', id: 'price-form', onsubmit: async (e) => {
      e.preventDefault();
      const body = { model_name: name.value.trim() };
      for (const [k, el] of Object.entries(inputs)) body[k] = el.value === '' ? 0 : Number(el.value);
      if (cap.value !== '') body.max_output_tokens = Math.round(Number(cap.value));
      try {
        await api('PUT', '/api/pricing', body);
        mount(editor);
        mount(out, notice('info', `Price of ${body.model_name} saved`));
      } catch (ex) {
        mount(out, failure(`Saving the price of ${body.model_name}`, ex));
      }
      settle();
    } },
    h('h2', {}, p ? `Price of ${p.model_name}` : 'New price'),
    field('Model (pattern, * and ? wildcards)', name),
    PRICES.map(([k, label]) => field(label, inputs[k])),
    field('Output cap (tokens)', cap),
    h('button', { type: 'submit', id: 'price-save' }, 'Save'), h('button', { type: 'button', onclick: () => mount(editor) }, 'Cancel')));
    (p ? inputs.input_usd_per_mtok : name).focus();
  }

  async function remove(p) {
    if (!window.confirm(`Remove the price of ${p.model_name}?`)) return;
    try {
      await api('DELETE', `/api/pricing?model_name=${encodeURIComponent(p.model_name)}`);
      mount(out, notice('info', `Price of ${p.model_name} removed`));
    } catch (ex) {
      mount(out, failure(`Removing the price of ${p.model_name}`, ex));
    }
    settle();
  }

  /** Load now and once more when the workers have followed the change (about a second). */
  function settle() {
    load();
    setTimeout(load, 1500);
  }

  async function unpricedForToken(prices) {
    const s = session();
    if (!isApiToken(s)) return [];
    const matchers = prices.map((p) => glob(String(p.model_name || '')));
    try {
      const res = await fetch('/v1/models', { headers: { Authorization: `Bearer ${s.token}` } });
      const body = await res.json();
      const ids = ((body && body.data) || []).map((m) => m.id).filter((id) => !matchers.some((m) => m.test(id)));
      return ids.length ? [{ channel: null, models: ids }] : [];
    } catch {
      return [];
    }
  }

  async function load() {
    let env;
    try {
      env = await get('/api/pricing', { envelope: true });
    } catch (e) {
      mount(list, failure('The price table', e));
      return;
    }
    const prices = Array.isArray(env.data) ? env.data : [];
    const unpriced = Array.isArray(env.unpriced) ? env.unpriced : await unpricedForToken(prices);
    mount(flags, unpriced.length
      ? h('div', { class: 'notice error', role: 'alert' }, h('strong', {}, 'Served without a price (requests for them are refused): '),
        h('ul', {}, unpriced.map((u) => h('li', { 'data-unpriced': u.channel || 'models' }, u.channel ? `${u.channel}: ` : '', u.models.flatMap((m, i) => [i ? ', ' : '',
          ctx.isAdmin ? h('button', { type: 'button', class: 'link', 'data-price-for': m, onclick: () => edit(null, m) }, m) : m])))))
      : null);
    const usd = (v) => (v === undefined || v === null ? '—' : `$${Number(v)}`);
    mount(list, table([
      ['Model (pattern)', (p) => p.model_name],
      ...PRICES.map(([k, label]) => [label, (p) => usd(p[k]), k]),
      ['Model ratio', (p) => String(p.model_ratio ?? '—')],
      ['Completion ratio', (p) => String(p.completion_ratio ?? '—')],
      ['Source', (p) => (p.source === 'kv' ? 'live' : 'config'), 'source'],
      ctx.isAdmin ? ['Actions', (p) => h('span', { class: 'actions' },
        h('button', { type: 'button', 'data-edit-price': p.model_name, onclick: () => edit(p) }, 'Edit'),
        p.source === 'kv' ? h('button', { type: 'button', class: 'danger', 'data-delete-price': p.model_name, onclick: () => remove(p) }, 'Remove') : null)] : null,
    ].filter(Boolean), prices, { empty: 'No prices.', rowAttrs: (p) => ({ 'data-price': p.model_name }) }));
  }
  await load();
}
