// Tokens: the caller's API tokens (`/api/token/`), create (the key shown once, with a copy
// button), enable / disable, revoke.

import { api, get, query, pageOf } from '../api.js';
import { h, mount, field, table, failure, loaded, notice, when } from '../dom.js';

export async function render(root, ctx) {
  const per = Number(ctx.status.quota_per_unit) || 500000;
  const name = h('input', { id: 'token-name', type: 'text', required: true, maxlength: 64 });
  const dollars = h('input', { id: 'token-quota', type: 'number', min: 0, step: '0.01', placeholder: 'unlimited' });
  const expiry = h('input', { id: 'token-expiry', type: 'date' });
  const modelsIn = h('input', { id: 'token-models', type: 'text', placeholder: 'all models' });
  const shown = h('div', { id: 'token-created', 'aria-live': 'polite' });
  const list = h('div', { id: 'token-list' }, 'Loading…');
  const form = h('form', { class: 'card controls', id: 'token-form', onsubmit: create },
    h('h2', {}, 'New token'),
    field('Name', name), field('Quota ($, empty: unlimited)', dollars), field('Expires', expiry), field('Models (comma-separated)', modelsIn),
    h('button', { type: 'submit', id: 'token-create' }, 'Create token'));
  root.append(form, shown, list);

  async function create(e) {
    e.preventDefault();
    const models = modelsIn.value.split(',').map((s) => s.trim()).filter(Boolean);
    const body = {
      name: name.value.trim(),
      unlimited_quota: dollars.value === '',
      remain_quota: dollars.value === '' ? 0 : Math.round(Number(dollars.value) * per),
      expired_time: expiry.value ? Math.floor(new Date(`${expiry.value}T23:59:59`).getTime() / 1000) : -1,
      model_limits_enabled: models.length > 0,
      model_limits: models.join(','),
    };
    try {
      const data = await api('POST', '/api/token/', body);
      const key = typeof data === 'string' ? data : data && data.key;
      if (key && !key.includes('…')) {
        const out = h('input', { id: 'token-key', type: 'text', readonly: true, value: key, 'aria-label': 'The new token' });
        mount(shown, h('div', { class: 'card notice info' },
          h('p', {}, 'Copy the token now: it is not shown again.'), out,
          h('button', { type: 'button', id: 'token-copy', onclick: async (ev) => {
            out.select();
            try { await navigator.clipboard.writeText(key); ev.target.textContent = 'Copied'; } catch { ev.target.textContent = 'Press Ctrl+C'; }
          } }, 'Copy')));
      } else {
        mount(shown, notice('info', 'Token created.'));
      }
      form.reset();
      load();
    } catch (ex) {
      mount(shown, failure('Creating a token', ex));
    }
  }

  async function act(what, method, path, body) {
    try {
      await api(method, path, body);
      mount(shown, notice('info', what));
    } catch (ex) {
      mount(shown, failure(what, ex));
    }
    load();
  }

  async function load() {
    const data = await loaded(list, 'Your tokens', get(`/api/token/${query({ p: 1, page_size: 100 })}`).then(pageOf));
    if (!data) return;
    mount(list, table([
      ['Name', (t) => t.name],
      ['Key', (t) => t.key],
      ['Status', (t) => (t.status === 1 ? 'enabled' : 'disabled')],
      ['Used', (t) => ctx.money(t.used_quota)],
      ['Remaining', (t) => (t.unlimited_quota ? 'unlimited' : ctx.money(t.remain_quota))],
      ['Models', (t) => t.model_limits || 'all'],
      ['Expires', (t) => (t.expired_time > 0 ? when(t.expired_time) : 'never')],
      ['Actions', (t) => h('span', { class: 'actions' },
        h('button', { type: 'button', onclick: () => act(t.status === 1 ? 'Token disabled' : 'Token enabled', 'PUT', '/api/token/?status_only=true', { id: t.id, status: t.status === 1 ? 2 : 1 }) }, t.status === 1 ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'danger', 'data-revoke': t.name, onclick: () => act(`Token ${t.name} revoked`, 'DELETE', `/api/token/${encodeURIComponent(t.id)}`) }, 'Revoke'))],
    ], data.items, { empty: 'No tokens yet.' }));
  }
  await load();
}
