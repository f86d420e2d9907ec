// The console's shell: sign-in, the signed-in user, navigation by role and the page router
// (`#/<page>`). Each page module exports `render(main, ctx)` and may return a cleanup
// function (timers), called when another page opens.

import { api, get, session, saveSession, clearSession, isApiToken } from './api.js';
import { h, mount, field, notice } from './dom.js';
import * as dashboard from './pages/dashboard.js';
import * as logs from './pages/logs.js';
import * as channels from './pages/channels.js';
import * as tokens from './pages/tokens.js';
import * as users from './pages/users.js';
import * as models from './pages/models.js';
import * as playground from './pages/playground.js';

const ROLE = { common: 1, admin: 10, root: 100 };
const ROLE_NAME = { 1: 'common', 10: 'admin', 100: 'root' };

/** The pages, in the navigation's order, with the least role that sees them. */
const PAGES = [
  { id: 'dashboard', title: 'Dashboard', role: ROLE.common, mod: dashboard },
  { id: 'logs', title: 'Logs', role: ROLE.common, mod: logs },
  { id: 'tokens', title: 'Tokens', role: ROLE.common, mod: tokens },
  { id: 'playground', title: 'Playground', role: ROLE.common, mod: playground },
  { id: 'models', title: 'Models & prices', role: ROLE.common, mod: models },
  { id: 'channels', title: 'Channels', role: ROLE.admin, mod: channels },
  { id: 'users', title: 'Users & quota', role: ROLE.admin, mod: users },
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
let cleanup = null;
let ctx = null;

/** Quota units → dollars, as NEW-API displays them. */
function money(status) {
  const per = Number(status && status.quota_per_unit) || 500000;
  return (q) => (q === undefined || q === null || q < 0 ? '—' : `$${(Number(q) / per).toFixed(per >= 100000 ? 4 : 2)}`);
}

function signIn(message) {
  if (cleanup) cleanup();
  cleanup = null;
  mount(nav);
  mount(who);
  const token = h('input', { id: 'signin-token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const user = h('input', { id: 'signin-user', type: 'text', autocomplete: 'username', placeholder: 'for an access token' });
  const err = h('div', { 'aria-live': 'polite' });
  const form = h('form', {
    class: 'card signin',
    onsubmit: async (e) => {
      e.preventDefault();
      const s = { token: token.value.trim(), user: user.value.trim() };
      if (!s.token) return;
      try {
        await api('GET', '/api/user/self', undefined, { session: s });
        saveSession(s);
        await start();
      } catch (ex) {
        mount(err, notice('error', `Sign-in refused: ${ex.message}`));
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'muted' }, 'Use an API token (sk-…), or a management access token with its user id (`ailurus up` prints the root user\'s).'),
  field('Token', token),
  field('User id (access tokens only)', user),
  h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in'),
  err);
  mount(main, message ? notice('error', message) : null, form);
  token.focus();
}

async function start() {
  const s = session();
  if (!s) return signIn();
  let me;
  let status = {};
  try {
    me = await get('/api/user/self');
  } catch (e) {
    clearSession();
    return signIn(`Signed out: ${e.message}`);
  }
  try {
    status = await get('/api/status');
  } catch {
    status = {};
  }
  // An API token never has more than a common user's rights, whatever the user's role.
  const role = isApiToken(s) ? ROLE.common : Number(me.role) || ROLE.common;
  ctx = { me, role, status, money: money(status), session: s, isAdmin: role >= ROLE.admin, isRoot: role >= ROLE.root, refreshMe };
  mount(who,
    h('span', { id: 'who-name' }, `${me.display_name || me.username} · ${ROLE_NAME[role] || role}`),
    h('button', { type: 'button', class: 'link', id: 'signout', onclick: () => { clearSession(); location.hash = ''; signIn(); } }, 'Sign out'));
  route();
}

async function refreshMe() {
  ctx.me = await get('/api/user/self');
  return ctx.me;
}

function route() {
  if (!ctx) return;
  const id = (location.hash.match(/^#\/([a-z]+)/) || [])[1] || 'dashboard';
  const visible = PAGES.filter((p) => ctx.role >= p.role);
  const page = visible.find((p) => p.id === id) || visible[0];
  mount(nav, visible.map((p) => h('a', { href: `#/${p.id}`, id: `nav-${p.id}`, 'aria-current': p === page ? 'page' : null }, p.title)));
  if (cleanup) cleanup();
  cleanup = null;
  document.title = `${page.title} · Ailurus`;
  const section = h('section', { id: `page-${page.id}`, 'aria-labelledby': `title-${page.id}` }, h('h1', { id: `title-${page.id}` }, page.title));
  mount(main, section);
  try {
    const r = page.mod.render(section, ctx);
    Promise.resolve(r).then((c) => { if (typeof c === 'function') cleanup = c; }).catch((e) => section.append(notice('error', e.message)));
  } catch (e) {
    section.append(notice('error', e.message));
  }
}

window.addEventListener('hashchange', route);
start();
