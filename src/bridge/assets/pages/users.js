// Users & quota (admins): `/api/user/` with balance, used, requests and group; top-up, set
// (the remaining quota plus an amount), group, enable / disable; new users; redemption
// codes (`/api/redemption/`).

import { api, get, query, pageOf } from '../api.js';
import { h, mount, field, table, failure, loaded, notice, num } from '../dom.js';

export async function render(root, ctx) {
  const per = Number(ctx.status.quota_per_unit) || 500000;
  const out = h('div', { id: 'user-result', 'aria-live': 'polite' });
  const list = h('div', { id: 'user-list' }, 'Loading…');
  const search = h('input', { id: 'user-search', type: 'search' });
  const newName = h('input', { id: 'user-new-name', type: 'text', required: true });
  const newRole = h('select', { id: 'user-new-role' }, h('option', { value: '1' }, 'common'), ctx.isRoot ? h('option', { value: '10' }, 'admin') : null);
  const codes = h('div', { id: 'redemptions' });
  root.append(
    h('form', { class: 'controls', onsubmit: (e) => { e.preventDefault(); load(); } }, field('Search', search), h('button', { type: 'submit' }, 'Search')),
    out, list,
    h('form', { class: 'card controls', onsubmit: async (e) => {
      e.preventDefault();
      await act(`User ${newName.value} created`, 'POST', '/api/user/', { username: newName.value.trim(), role: Number(newRole.value) });
      e.target.reset();
    } }, h('h2', {}, 'New user'), field('Username', newName), field('Role', newRole), h('button', { type: 'submit' }, 'Create user')),
    h('h2', {}, 'Redemption codes'), codes);

  async function act(what, method, path, body) {
    try {
      const data = await api(method, path, body);
      mount(out, notice('info', what));
      load();
      return data;
    } catch (e) {
      mount(out, failure(what, e));
      return null;
    }
  }

  /** Set the remaining balance to the amount (NEW-API's `PUT /api/user/` with `quota`). */
  function setBalance(u, input) {
    if (input.value.trim() === '' || !(Number(input.value) >= 0)) return;
    act(`Set ${u.username}'s balance to $${input.value}`, 'PUT', '/api/user/', { id: u.id, quota: Math.round(Number(input.value) * per) });
  }

  function topUp(u, input) {
    const add = Math.round(Number(input.value) * per);
    if (!add) return;
    act(`Added $${input.value} to ${u.username}`, 'PUT', '/api/user/', { id: u.id, quota: Number(u.quota) + add });
  }

  async function load() {
    const k = search.value.trim();
    const path = k ? `/api/user/search${query({ keyword: k })}` : `/api/user/${query({ p: 1, page_size: 100 })}`;
    const data = await loaded(list, 'Users', get(path).then(pageOf));
    if (!data) return;
    mount(list, table([
      ['Id', (u) => String(u.id)],
      ['User', (u) => u.username],
      ['Role', (u) => ({ 1: 'common', 10: 'admin', 100: 'root' })[u.role] || String(u.role)],
      ['Status', (u) => (u.status === 1 ? 'enabled' : 'disabled')],
      ['Group', (u) => u.group],
      ['Balance', (u) => ctx.money(u.quota)],
      ['Used', (u) => ctx.money(u.used_quota)],
      ['Requests', (u) => num(u.request_count)],
      ['Top up or set ($)', (u) => {
        const amount = h('input', { type: 'number', step: '0.01', min: 0, class: 'narrow', 'aria-label': `Amount to add to ${u.username}` });
        return h('span', { class: 'actions' }, amount,
          h('button', { type: 'button', 'data-topup': u.username, onclick: () => topUp(u, amount) }, 'Add'),
          h('button', { type: 'button', 'data-set': u.username, 'aria-label': `Set ${u.username}'s balance to the amount`, onclick: () => setBalance(u, amount) }, 'Set'));
      }],
      ['Actions', (u) => (u.role >= ctx.role && !ctx.isRoot ? '' : h('span', { class: 'actions' },
        h('button', { type: 'button', onclick: () => act(`${u.username} ${u.status === 1 ? 'disabled' : 'enabled'}`, 'POST', '/api/user/manage', { id: u.id, action: u.status === 1 ? 'disable' : 'enable' }) }, u.status === 1 ? 'Disable' : 'Enable'),
        h('button', { type: 'button', onclick: () => {
          const g = window.prompt(`Group of ${u.username}`, u.group || 'default');
          if (g) act(`${u.username} moved to ${g}`, 'PUT', '/api/user/', { id: u.id, group: g });
        } }, 'Group')))],
    ], data.items, { empty: 'No users.' }));
  }

  async function loadCodes(fresh = null) {
    const cname = h('input', { id: 'code-name', type: 'text', required: true });
    const count = h('input', { id: 'code-count', type: 'number', min: 1, max: 100, value: 1 });
    const amount = h('input', { id: 'code-quota', type: 'number', min: 0, step: '0.01', value: 1 });
    const made = h('div', { 'aria-live': 'polite' });
    const data = await loaded(codes, 'Redemption codes', get(`/api/redemption/${query({ p: 1, page_size: 50 })}`).then(pageOf));
    if (!data) return;
    mount(codes, h('form', { class: 'card controls', onsubmit: async (e) => {
      e.preventDefault();
      const keys = await act('Codes created', 'POST', '/api/redemption/', { name: cname.value.trim(), count: Number(count.value), quota: Math.round(Number(amount.value) * per) });
      loadCodes(Array.isArray(keys) ? keys : null);
    } }, field('Name', cname), field('Count', count), field('Quota each ($)', amount), h('button', { type: 'submit', id: 'code-create' }, 'Create codes')), made,
    table([['Name', (c) => c.name], ['Quota', (c) => ctx.money(c.quota)], ['Status', (c) => (c.status === 1 ? 'unused' : c.status === 3 ? 'used' : 'disabled')], ['Used by', (c) => String(c.used_user_id || '—')]], data.items, { empty: 'No codes.' }));
    if (fresh) mount(made, h('p', {}, 'Copy the codes now: they are not shown again.'), h('pre', { id: 'redemption-keys' }, fresh.join('\n')));
  }

  await Promise.all([load(), loadCodes()]);
}
