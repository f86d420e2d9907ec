// Tokens: the caller's API tokens (`/api/token/`): create and edit with their limits (quota,
// expiry, models, rpm / tpm / concurrency), the key shown once with a copy button, enable /
// disable, revoke.

import { api, get, query, pageOf } from '../api.js';
import { h, mount, field, table, failure, loaded, notice, when, num } from '../dom.js';

/** `YYYY-MM-DD` of Unix seconds (local), for a date input. */
function day(secs) {
  if (!secs || secs < 0) return '';
  const d = new Date(secs * 1000);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** The limits of a token as one line. */
function limits(t) {
  const parts = [];
  if (t.rpm) parts.push(`${num(t.rpm)} rpm`);
  if (t.tpm) parts.push(`${num(t.tpm)} tpm`);
  if (t.concurrency) parts.push(`${num(t.concurrency)} at once`);
  return parts.length ? parts.join(' · ') : 'none';
}

export async function render(root, ctx) {
  const per = Number(ctx.status.quota_per_unit) || 500000;
  const shown = h('div', { id: 'token-created', 'aria-live': 'polite' });
  const list = h('div', { id: 'token-list' }, 'Loading…');
  const editor = h('div', { id: 'token-editor' });
  root.append(form(null), shown, editor, list);

  /** The create form (`t` null) or the edit form of token `t`; ids are `token-…` or `tok-edit-…`. */
  function form(t) {
    const p = t ? 'tok-edit' : 'token';
    const v = t || {};
    const name = h('input', { id: `${p}-name`, type: 'text', required: true, maxlength: 50, value: v.name || '' });
    const dollars = h('input', { id: `${p}-quota`, type: 'number', min: 0, step: '0.01', placeholder: 'unlimited', value: t && !t.unlimited_quota ? (t.remain_quota / per).toFixed(2) : '' });
    const expiry = h('input', { id: `${p}-expiry`, type: 'date', value: day(v.expired_time) });
    const modelsIn = h('input', { id: `${p}-models`, type: 'text', placeholder: 'all models', value: v.model_limits || '' });
    const rate = (k) => h('input', { id: `${p}-${k}`, type: 'number', min: 0, step: 1, placeholder: 'no limit', value: v[k] || '' });
    const rpm = rate('rpm');
    const tpm = rate('tpm');
    const conc = rate('concurrency');
    const f = h('form', { class: 'card controls', id: `${p}-form`, onsubmit: (e) => save(e, t, f) },
      h('h2', {}, t ? `Edit ${t.name}` : 'New token'),
      field('Name', name), field('Quota ($, empty: unlimited)', dollars), field('Expires', expiry), field('Models (comma-separated)', modelsIn),
      field('Requests per minute', rpm), field('Tokens per minute', tpm), field('Requests at once', conc),
      h('button', { type: 'submit', id: t ? 'tok-edit-save' : 'token-create' }, t ? 'Save' : 'Create token'),
      t ? h('button', { type: 'button', onclick: () => mount(editor) }, 'Cancel') : null);
    f.values = () => {
      const models = modelsIn.value.split(',').map((s) => s.trim()).filter(Boolean);
      const n = (el) => (el.value === '' ? 0 : Math.round(Number(el.value)));
      return {
        name: name.value.trim(),
        unlimited_quota: dollars.value === '',
        remain_quota: dollars.value === '' ? 0 : Math.round(Number(dollars.value) * per),
        expired_time: expiry.value ? Math.floor(new Date(`${expiry.value}T23:59:59`).getTime() / 1000) : -1,
        model_limits_enabled: models.length > 0,
        model_limits: models.join(','),
        rpm: n(rpm),
        tpm: n(tpm),
        concurrency: n(conc),
      };
    };
    return f;
  }

  async function save(e, t, f) {
    e.preventDefault();
    const body = f.values();
    if (t) {
      try {
        await api('PUT', '/api/token/', { id: t.id, ...body });
        mount(editor);
        mount(shown, notice('info', `Token ${body.name} saved`));
      } catch (ex) {
        mount(shown, failure(`Saving ${t.name}`, ex));
      }
      return load();
    }
    try {
      const data = await api('POST', '/api/token/', body);
      const key = typeof data === 'string' ? data : data && data.key;
      if (key && !key.includes('…')) {
        const out = h('input', { id: 'token-key', type: 'text', readonly: true, value: key, 'aria-label': 'The new token' });
        mount(shown, h('div', { class: 'card notice info' },
          h('p', {}, `Token ${body.name} created. Copy it now: it is not shown again.`), out,
          h('button', { type: 'button', id: 'token-copy', onclick: async (ev) => {
            out.select();
            let ok = false;
            try { await navigator.clipboard.writeText(key); ok = true; } catch { ok = document.execCommand && document.execCommand('copy'); }
            ev.target.textContent = ok ? 'Copied' : 'Press Ctrl+C';
          } }, 'Copy')));
      } else {
        mount(shown, notice('info', 'Token created.'));
      }
      f.reset();
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

  function edit(t) {
    mount(editor, form(t));
    editor.querySelector('input').focus();
  }

  async function load() {
    const data = await loaded(list, 'Your tokens', get(`/api/token/${query({ p: 1, page_size: 100 })}`).then(pageOf));
    if (!data) return;
    mount(list, table([
      ['Name', (t) => t.name],
      ['Key', (t) => t.key],
      ['Status', (t) => (t.status === 1 ? 'enabled' : 'disabled'), 'status'],
      ['Used', (t) => ctx.money(t.used_quota)],
      ['Remaining', (t) => (t.unlimited_quota ? 'unlimited' : ctx.money(t.remain_quota)), 'remain'],
      ['Models', (t) => t.model_limits || 'all', 'models'],
      ['Limits', limits, 'limits'],
      ['Expires', (t) => (t.expired_time > 0 ? when(t.expired_time) : 'never'), 'expires'],
      ['Actions', (t) => h('span', { class: 'actions' },
        h('button', { type: 'button', 'data-edit': t.name, onclick: () => edit(t) }, 'Edit'),
        h('button', { type: 'button', onclick: () => act(t.status === 1 ? 'Token disabled' : 'Token enabled', 'PUT', '/api/token/?status_only=true', { id: t.id, status: t.status === 1 ? 2 : 1 }) }, t.status === 1 ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'danger', 'data-revoke': t.name, onclick: () => act(`Token ${t.name} revoked`, 'DELETE', `/api/token/${encodeURIComponent(t.id)}`) }, 'Revoke'))],
    ], data.items, { empty: 'No tokens yet.', rowAttrs: (t) => ({ 'data-token': t.name }) }));
  }
  await load();
}
