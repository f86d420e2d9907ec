// Building DOM without markup: every string becomes a text node (never innerHTML), so
// nothing the server sends can become an element or a script.

/** An element: `attrs` are attributes (`on*` functions become listeners, `class`,
 * `value`, `checked`, `disabled` are set as properties); children are nodes or strings. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: `<label>text <input …></label>`. */
export function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

/** A table from `columns` ([header, row → cell, optional column key, set as the cells'
 * `data-col`]) and `rows`. */
export function table(columns, rows, opts = {}) {
  const head = h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', { scope: 'col' }, title))));
  const body = h('tbody', {}, rows.map((r) => {
    const tr = h('tr', opts.rowAttrs ? opts.rowAttrs(r) : {}, columns.map(([, cell, key]) => h('td', { 'data-col': key }, cell(r))));
    return tr;
  }));
  if (rows.length === 0) body.append(h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, opts.empty || 'Nothing yet.')));
  return h('div', { class: 'scroll' }, h('table', { class: opts.class || '' }, opts.caption ? h('caption', {}, opts.caption) : null, head, body));
}

/** A notice: `kind` is `error`, `unavailable` or `info`. */
export function notice(kind, text) {
  return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** The notice for a failed call: "not available on this server" for a missing endpoint. */
export function failure(what, err) {
  if (err && err.unavailable) return notice('unavailable', `${what}: not available on this server (${err.message}).`);
  return notice('error', `${what}: ${err && err.message ? err.message : err}`);
}

/** A date-time from Unix seconds. */
export function when(secs) {
  if (!secs || secs < 0) return '—';
  const d = new Date(secs * 1000);
  return d.toLocaleString(undefined, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A whole number with separators. */
export function num(n) {
  return n === undefined || n === null || Number.isNaN(n) ? '—' : Number(n).toLocaleString('en-US');
}

/** Await `promise`; when it fails, show why in `el` and resolve to null. */
export async function loaded(el, what, promise) {
  try {
    return await promise;
  } catch (e) {
    mount(el, failure(what, e));
    return null;
  }
}
