// Channels (admins): `/api/channel/` with health, add / edit / enable / disable / delete,
// priority and weight, and Test. A channel's key is write-only: the form never shows it
// and an empty key field leaves it unchanged.

import { api, get, query, pageOf } from '../api.js';
import { h, mount, field, table, failure, loaded, notice, when } from '../dom.js';

export async function render(root) {
  const out = h('div', { id: 'channel-result', 'aria-live': 'polite' });
  const list = h('div', { id: 'channel-list' }, 'Loading…');
  const editor = h('div', { id: 'channel-editor' });
  root.append(h('button', { type: 'button', id: 'channel-add', onclick: () => edit(null) }, 'Add channel'), out, editor, list);

  async function act(what, method, path, body) {
    try {
      const env = await api(method, path, body, { envelope: true });
      mount(out, notice('info', `${what}${env.message ? `: ${env.message}` : ''}${env.time !== undefined ? ` (${env.time} s)` : ''}`));
    } catch (e) {
      mount(out, failure(what, e));
    }
    load();
  }

  function edit(c) {
    const v = c || {};
    const inputs = {
      name: h('input', { id: 'ch-name', type: 'text', required: true, value: v.name || '' }),
      type: h('input', { id: 'ch-type', type: 'text', value: v.type ?? 'openai' }),
      base_url: h('input', { id: 'ch-base', type: 'url', value: v.base_url || '' }),
      key: h('input', { id: 'ch-key', type: 'password', autocomplete: 'off', placeholder: c ? 'unchanged' : '' }),
      models: h('input', { id: 'ch-models', type: 'text', value: v.models || '' }),
      group: h('input', { id: 'ch-group', type: 'text', value: v.group || 'default' }),
      priority: h('input', { id: 'ch-priority', type: 'number', value: v.priority ?? 0 }),
      weight: h('input', { id: 'ch-weight', type: 'number', min: 0, value: v.weight ?? 1 }),
    };
    mount(editor, h('form', { class: 'card controls', onsubmit: (e) => {
      e.preventDefault();
      const body = { ...(c ? { id: c.id } : {}) };
      for (const [k, el] of Object.entries(inputs)) {
        if (k === 'key' && !el.value) continue;
        body[k] = el.type === 'number' ? Number(el.value) : el.value.trim();
      }
      mount(editor);
      act(c ? 'Channel saved' : 'Channel added', c ? 'PUT' : 'POST', '/api/channel/', c ? body : { mode: 'single', channel: body });
    } },
    h('h2', {}, c ? `Edit ${c.name}` : 'New channel'),
    Object.entries(inputs).map(([k, el]) => field(k === 'key' ? 'Key (write-only)' : k.replace('_', ' '), el)),
    h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', onclick: () => mount(editor) }, 'Cancel')));
    inputs.name.focus();
  }

  async function load() {
    const data = await loaded(list, 'Channels', get(`/api/channel/${query({ p: 1, page_size: 100 })}`).then(pageOf));
    if (!data) return;
    mount(list, table([
      ['Name', (c) => c.name],
      ['Type', (c) => String(c.type ?? '')],
      ['Status', (c) => (c.status === 1 ? 'enabled' : 'disabled')],
      ['Health', (c) => c.health || (c.response_time ? `${c.response_time} ms` : '—')],
      ['Models', (c) => c.models || ''],
      ['Priority', (c) => String(c.priority ?? 0)],
      ['Weight', (c) => String(c.weight ?? 0)],
      ['Tested', (c) => when(c.test_time)],
      ['Actions', (c) => h('span', { class: 'actions' },
        h('button', { type: 'button', 'data-test': c.name, onclick: () => act(`Test of ${c.name}`, 'GET', `/api/channel/test/${c.id}`) }, 'Test'),
        h('button', { type: 'button', onclick: () => edit(c) }, 'Edit'),
        h('button', { type: 'button', 'data-toggle': c.name, onclick: () => act(`${c.name} ${c.status === 1 ? 'disabled' : 'enabled'}`, 'PUT', '/api/channel/', { id: c.id, status: c.status === 1 ? 2 : 1 }) }, c.status === 1 ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'danger', onclick: () => { if (window.confirm(`Delete channel ${c.name}?`)) act(`${c.name} deleted`, 'DELETE', `/api/channel/${c.id}`); } }, 'Delete'))],
    ], data.items, { empty: 'No channels.' }));
  }
  await load();
}
