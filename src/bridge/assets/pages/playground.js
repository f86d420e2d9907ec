// Playground: one chat turn streamed through the bridge's `/v1/chat/completions` with an
// API token (the session's when it is one), showing the answer as it grows, the tokens,
// the time to the first token, the latency and the cost (the balance before and after).

import { get, session, isApiToken, eachData } from '../api.js';
import { h, mount, field, notice } from '../dom.js';

export async function render(root, ctx) {
  const s = session();
  const key = h('input', { id: 'play-key', type: 'password', autocomplete: 'off', value: isApiToken(s) ? s.token : '', placeholder: 'sk-…' });
  const model = h('input', { id: 'play-model', type: 'text', list: 'play-models', value: 'mock-gpt' });
  const models = h('datalist', { id: 'play-models' });
  const prompt = h('textarea', { id: 'play-prompt', rows: 4 }, 'Say hello in three languages.');
  const answer = h('pre', { id: 'play-answer', class: 'answer', 'aria-live': 'polite' });
  const facts = h('p', { id: 'play-facts', class: 'muted' });
  const err = h('div', {});
  const send = h('button', { type: 'submit', id: 'play-send' }, 'Send');
  root.append(h('form', { class: 'card controls play', onsubmit: run },
    field('API token', key), field('Model', model), models, field('Prompt', prompt), send), err, answer, facts);

  async function loadModels() {
    if (!key.value) return;
    try {
      const res = await fetch('/v1/models', { headers: { Authorization: `Bearer ${key.value}` } });
      const body = await res.json();
      mount(models, ((body && body.data) || []).map((m) => h('option', { value: m.id })));
    } catch {
      mount(models);
    }
  }
  key.addEventListener('change', loadModels);
  loadModels();

  async function run(e) {
    e.preventDefault();
    mount(err);
    answer.textContent = '';
    facts.textContent = '';
    send.disabled = true;
    const before = await get('/api/user/self').catch(() => null);
    const t0 = performance.now();
    let ttft = null;
    let usage = null;
    try {
      const res = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key.value}` },
        body: JSON.stringify({ model: model.value, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: prompt.value }] }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new Error((body.error && body.error.message) || `HTTP ${res.status}`);
      }
      await eachData(res, (data) => {
        if (data === '[DONE]') return;
        let chunk;
        try { chunk = JSON.parse(data); } catch { return; }
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (ttft === null) ttft = performance.now() - t0;
          answer.textContent += delta.content;
        }
        if (chunk.usage) usage = chunk.usage;
      });
    } catch (ex) {
      mount(err, notice('error', `The answer failed: ${ex.message}`));
    }
    const total = performance.now() - t0;
    const line = (cost) => [
      usage ? `tokens ${usage.prompt_tokens} in / ${usage.completion_tokens} out` : 'tokens: not reported',
      `first token ${ttft === null ? '—' : `${Math.round(ttft)} ms`}`,
      `latency ${Math.round(total)} ms`,
      cost,
    ].join(' · ');
    facts.textContent = line('cost: settling…');
    facts.textContent = line(before ? await settledCost(Number(before.used_quota)) : 'cost —');
    send.disabled = false;
  }

  // While a worker holds a quota lease the account shows its unspent part as used; the
  // spend is final once two reads 700 ms apart agree (leases return after 0.5 s idle).
  async function settledCost(usedBefore) {
    let last = null;
    for (let i = 0; i < 12; i += 1) {
      const now = await get('/api/user/self').catch(() => null);
      if (!now) return 'cost —';
      if (last !== null && Number(now.used_quota) === last) return `cost ${ctx.money(last - usedBefore)} (your account)`;
      last = Number(now.used_quota);
      await new Promise((r) => setTimeout(r, 700));
    }
    return 'cost: still settling';
  }
}
