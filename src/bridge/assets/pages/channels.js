// Channels (admins): `/api/channel/` with their health on the live workers (CHANNEL_HEALTH),
// add / edit / enable / disable / delete, priority and weight, and Test. A channel's key is
// write-only: the list shows the server's mask, the form never shows it, and an empty key
// field leaves the stored one unchanged.

import { api, get, query, pageOf } from '../api.js';
import { h, mount, field, table, failure, loaded, notice, num } from '../dom.js';

const KINDS = ['openai', 'openai_responses', 'anthropic', 'gemini', 'mock'];

export async function render(root) {
  const out = h('div', { id: 'channel-result', 'aria-live': 'polite' });
  const list = h('div', { id: 'channel-list' }, 'Loading…');
  const editor = h('div', { id: 'channel-editor' });
  root.append(h('button', { type: 'button', id: 'channel-add', onclick: () => edit(null) }, 'Add channel'), out, editor, list);

  async function act(what, method, path, body) {
    try {
      const env = await api(method, path, body, { envelope: true });
      const answer = env.data && env.data.answer ? ` — answered “${env.data.answer}”` : '';
      const time = env.time !== undefined ? ` in ${env.time} s` : '';
      mount(out, notice('info', `${what}: ok${time}${answer}${env.message ? ` (${env.message})` : ''}`));
    } catch (e) {
      mount(out, failure(what, e));
    }
    await load();
  }

  function edit(c) {
    const v = c || {};
    const inputs = {
      name: h('input', { id: 'ch-name', type: 'text', required: true, value: v.name || '', disabled: !!c }),
      type: h('select', { id: 'ch-type' }, KINDS.map((k) => h('option', { value: k, selected: (v.kind || 'openai') === k }, k))),
      base_url: h('input', { id: 'ch-base', type: 'url', value: v.base_url || '', placeholder: 'https://api.openai.com/v1' }),
      key: h('input', { id: 'ch-key', type: 'password', autocomplete: 'new-password', placeholder: c ? `unchanged (${v.key || 'none'})` : '' }),
      models: h('input', { id: 'ch-models', type: 'text', value: v.models || '', placeholder: 'gpt-4o,gpt-4o-*' }),
      priority: h('input', { id: 'ch-priority', type: 'number', step: 1, value: v.priority ?? 0 }),
      weight: h('input', { id: 'ch-weight', type: 'number', min: 1, step: 1, value: v.weight ?? 1 }),
      model_mapping: h('input', { id: 'ch-mapping', type: 'text', value: v.model_mapping && v.model_mapping !== '{}' ? v.model_mapping : '', placeholder: '{"gpt-4o": "gpt-4o-2024-08-06"}' }),
    };
    const labels = { name: 'Name', type: 'Kind', base_url: 'Base URL', key: 'API key (write-only)', models: 'Models (comma-separated)', priority: 'Priority (higher first)', weight: 'Weight', model_mapping: 'Model mapping (JSON, requested → upstream)' };
    mount(editor, h('form', { class: 'card controls', id: 'channel-form', onsubmit: (e) => {
      e.preventDefault();
      const body = c ? { id: c.id } : { name: inputs.name.value.trim() };
      for (const [k, el] of Object.entries(inputs)) {
        if (k === 'name' || ((k === 'key' || k === 'model_mapping') && !el.value)) continue;
        body[k] = el.type === 'number' ? Number(el.value) : el.value.trim();
      }
      mount(editor);
      act(c ? `Channel ${c.name} saved` : `Channel ${body.name} added`, c ? 'PUT' : 'POST', '/api/channel/', c ? body : { mode: 'single', channel: body });
    } },
    h('h2', {}, c ? `Edit ${c.name}` : 'New channel'),
    Object.entries(inputs).map(([k, el]) => field(labels[k], el)),
    h('button', { type: 'submit', id: 'ch-save' }, 'Save'), h('button', { type: 'button', onclick: () => mount(editor) }, 'Cancel')));
    (c ? inputs.type : inputs.name).focus();
  }

  const health = (c) => (c.health ? `${c.health} · ${num(c.successes)} ok / ${num(c.failures)} failed · ${num(c.response_time)} ms` : 'no report yet');

  async function load() {
    const data = await loaded(list, 'Channels', get(`/api/channel/${query({ p: 1, page_size: 100 })}`).then(pageOf));
    if (!data) return;
    mount(list, table([
      ['Name', (c) => c.name],
      ['Kind', (c) => c.kind || String(c.type ?? '')],
      ['Status', (c) => (c.status === 1 ? 'enabled' : 'disabled'), 'status'],
      ['Health', health, 'health'],
      ['Key', (c) => c.key || 'none', 'key'],
      ['Models', (c) => c.models || 'all'],
      ['Priority', (c) => String(c.priority ?? 0), 'priority'],
      ['Weight', (c) => String(c.weight ?? 0), 'weight'],
      ['Origin', (c) => c.origin || ''],
      ['Actions', (c) => h('span', { class: 'actions' },
        h('button', { type: 'button', 'data-test': c.name, onclick: () => act(`Test of ${c.name}`, 'GET', `/api/channel/test/${c.id}`) }, 'Test'),
        h('button', { type: 'button', 'data-edit': c.name, onclick: () => edit(c) }, 'Edit'),
        h('button', { type: 'button', 'data-toggle': c.name, onclick: () => act(`${c.name} ${c.status === 1 ? 'disabled' : 'enabled'}`, 'PUT', '/api/channel/', { id: c.id, status: c.status === 1 ? 2 : 1 }) }, c.status === 1 ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'danger', 'data-delete': c.name, onclick: () => { if (window.confirm(`Delete channel ${c.name}?`)) act(`${c.name} deleted`, 'DELETE', `/api/channel/${c.id}`); } }, 'Delete'))],
    ], data.items, { empty: 'No channels.', rowAttrs: (c) => ({ 'data-channel': c.name }) }));
  }
  await load();
  // Health changes as the workers report it (every 5 s).
  const timer = setInterval(() => { if (!document.hidden && !editor.firstChild) load(); }, 5000);
  return () => clearInterval(timer);
}
