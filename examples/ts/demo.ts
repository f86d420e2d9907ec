/**
 * Gemini CLI "NATS mode" demo: one streamed request, quota events, HTTP fallback.
 *
 *   AILURUS_TOKEN=$(cat .ailurus-data/demo-token) npx tsx demo.ts "hello over NATS"
 *
 * The answer goes to stdout as it streams; status lines go to stderr:
 *   [nats-ws] connected to ws://127.0.0.1:9222 as demo (session …)
 *   [nats-ws] 6 in · 36 out tokens · $0.000558 · 12 ms · 5 chunks · trace t_…
 *   [quota] demo: 2499721 remain of 2500000 (last cost 279, trace t_…)
 * Ctrl-C cancels the request (`llm.cancel.<trace_id>`). Exit code: 0 on an answer, 1 otherwise.
 */

import { loadConfig } from './config.js';
import { LLMClient, LLMError } from './llm-client.js';
import type { QuotaChangeEvent } from './types.js';

const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<number> {
  const prompt = process.argv.slice(2).join(' ') || 'Hello from the Gemini CLI NATS mode';
  const config = loadConfig();
  const client = await LLMClient.create(config);
  const nats = client.nats;

  // Quota events for this user; resolve when the event of our own request arrives.
  let ourTrace: string | undefined;
  let gotQuota: (ev: QuotaChangeEvent) => void = () => {};
  const quotaSeen = new Promise<QuotaChangeEvent>((res) => (gotQuota = res));
  const early: QuotaChangeEvent[] = [];
  if (nats) {
    log(`[${nats.transport}] connected to ${config.natsUrl} as ${config.userId} (session ${config.sessionId})`);
    nats.subscribeQuota(config.userId, (ev) => {
      log(
        `[quota] ${ev.user_id}: ${ev.quota_remain} remain of ${ev.quota_total} ` +
          `(last cost ${ev.last_cost}${ev.trace_id ? `, trace ${ev.trace_id}` : ''})`,
      );
      if (ourTrace === undefined) early.push(ev);
      else if (ev.trace_id === ourTrace) gotQuota(ev);
    });
    nats.publishPresence(config.userId, config.sessionId, 'online');
  } else {
    log(`[http] ${client.natsUnavailable}; using ${config.useCodeswitch ? config.codeswitchBaseUrl : (config.newApiUrl ?? '(no NEW_API_URL)')}`);
  }

  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  try {
    const result = await client.chat([{ role: 'user', content: prompt }], {
      onDelta: (d) => process.stdout.write(d),
      signal: abort.signal,
    });
    process.stdout.write('\n');
    const r = result.response;
    if (result.fallbackReason && nats) log(`[http] fell back: ${result.fallbackReason}`);
    log(
      `[${result.transport}] ${r.tokens_input} in · ${r.tokens_output} out tokens · $${r.cost.toFixed(6)} · ` +
        `${r.duration_ms} ms · ${result.chunks} chunks · trace ${r.trace_id}`,
    );
    if (nats && result.transport !== 'http' && config.token) {
      // The worker settles the quota right after the final reply; wait briefly for the event.
      ourTrace = r.trace_id;
      const already = early.find((ev) => ev.trace_id === ourTrace);
      if (already) gotQuota(already);
      const ev = await Promise.race([quotaSeen, new Promise<undefined>((res) => setTimeout(() => res(undefined), 3000))]);
      if (!ev) log('[quota] no quota event within 3 s');
    }
    return 0;
  } catch (e) {
    const status = e instanceof LLMError ? ` (${e.status})` : '';
    log(`error${status}: ${(e as Error).message}`);
    return 1;
  } finally {
    nats?.publishPresence(config.userId, config.sessionId, 'offline');
    await client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    log(`error: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
