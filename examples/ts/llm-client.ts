/**
 * LLM client with NATS + HTTP fallback (seed: `packages/core/src/nats/llm-client.ts`).
 *
 * Over NATS it follows Ailurus's reply protocol (design §3):
 *   1. subscribe to a fresh inbox, then publish the `LLMNATSRequest` on
 *      `llm.request.<platform>` with that inbox as reply subject and headers
 *      `Ailurus-Heartbeat: 1` (a worker answers a heartbeat at once) and a proof of
 *      possession of the token for this one request (`proofHeaders`: the token's id, a time
 *      and an HMAC; neither the token nor its hash alone ever travels on NATS);
 *   2. no reply within ~1 s means no worker is listening (a JetStream stream capturing
 *      `llm.request.*` hides NATS's 503 no-responders, so silence is the signal);
 *   3. then every reply carries `Ailurus-Kind`: `heartbeat` (still working), `chunk`
 *      (`{trace_id, seq, delta}`), and one final `done` (`LLMNATSResponse`) or `error`
 *      (`LLMNATSResponse` with `success:false`, plus `Ailurus-Status`);
 *   4. a gap longer than the silence bound between replies means the worker died;
 *   5. giving up early (abort) publishes `llm.cancel.<trace_id>` so the worker stops.
 *
 * When NATS is disabled (`NATS_ENABLED=false`), unreachable, or answers "no worker" before
 * anything was streamed, the same request goes to the HTTP bridge: `CODESWITCH_BASE_URL`
 * `/v1/chat/completions` with `stream:true`, token as `Authorization: Bearer`.
 */

import { createHash, createHmac } from 'node:crypto';
import { createInbox, JSONCodec, type Msg, type Subscription } from 'nats';
import { httpBaseUrl, randomId, type ClientConfig } from './config.js';
import { NatsClient, subjectToken } from './nats-client.js';
import {
  Headers,
  type AilurusRequest,
  type AilurusResponse,
  type LLMChunk,
  type LLMMessage,
  type ReplyKind,
  type Transport,
} from './types.js';

const jc = JSONCodec();

/** A failed request, with an HTTP-like status. */
export class LLMError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly response?: AilurusResponse,
  ) {
    super(message);
    this.name = 'LLMError';
  }
}

/** Nothing answered within the first-reply bound: no worker serves the subject. */
export class NoWorkerError extends LLMError {
  constructor() {
    super(503, 'no Ailurus worker is serving this subject');
    this.name = 'NoWorkerError';
  }
}

/** The worker stopped heartbeating mid-request (it probably died). */
export class WorkerSilentError extends LLMError {
  constructor(ms: number) {
    super(504, `the worker went silent for ${ms} ms (it may have died)`);
    this.name = 'WorkerSilentError';
  }
}

export interface ChatOptions {
  /** Called with each piece of text as it arrives. */
  onDelta?: (delta: string) => void;
  /** Abort the request (publishes `llm.cancel.<trace_id>` over NATS). */
  signal?: AbortSignal;
  maxTokens?: number;
  metadata?: Record<string, string>;
}

export interface ChatResult {
  response: AilurusResponse;
  transport: Transport;
  /** Number of streamed pieces received. */
  chunks: number;
  /** Why NATS was not used, when the answer came over HTTP. */
  fallbackReason?: string;
}

export function sha256Hex(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

/**
 * The proof of possession of `token` for one request (examples/nats-cli.md): good for this
 * subject, trace id and body (and the `Ailurus-Format` / `-Op` / `-Model` headers, none for a
 * seed request) only, once, within 60 s.
 */
export function proofHeaders(token: string, subject: string, traceId: string, body: Uint8Array): Record<string, string> {
  const key = createHmac('sha256', token).update('ailurus-proof-key-v1').digest('hex');
  const time = String(Math.floor(Date.now() / 1000));
  const text = ['ailurus-proof-v1', subject, traceId, time, '', '', '', sha256Hex(body)].join('\n');
  return {
    [Headers.tokenId]: sha256Hex(token),
    [Headers.proofTime]: time,
    [Headers.proof]: createHmac('sha256', key).update(text).digest('hex'),
  };
}

type Next = IteratorResult<Msg> | 'timeout' | 'aborted';

/** The next message, or 'timeout' after `ms`, or 'aborted'. A pending `next()` is kept. */
async function nextWithin(
  pending: { p?: Promise<IteratorResult<Msg>> },
  it: AsyncIterator<Msg>,
  ms: number,
  signal?: AbortSignal,
): Promise<Next> {
  pending.p ??= it.next();
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const r = await Promise.race<Next>([
      pending.p,
      new Promise<Next>((res) => {
        timer = setTimeout(() => res('timeout'), ms);
      }),
      new Promise<Next>((res) => {
        if (!signal) return;
        if (signal.aborted) return res('aborted');
        onAbort = () => res('aborted');
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
    if (r !== 'timeout' && r !== 'aborted') pending.p = undefined;
    return r;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

export class LLMClient {
  private constructor(
    readonly config: ClientConfig,
    readonly nats: NatsClient | undefined,
    /** Why NATS is not used (disabled or unreachable). */
    readonly natsUnavailable: string | undefined,
  ) {}

  /** Connect to NATS when enabled; an unreachable server means HTTP-only, not an error. */
  static async create(config: ClientConfig): Promise<LLMClient> {
    if (!config.natsEnabled) return new LLMClient(config, undefined, 'NATS_ENABLED=false');
    try {
      const nats = await NatsClient.connect({
        url: config.natsUrl,
        timeoutMs: config.connectTimeoutMs,
        user: config.natsUser,
        pass: config.natsPassword,
      });
      return new LLMClient(config, nats, undefined);
    } catch (e) {
      return new LLMClient(config, undefined, `NATS at ${config.natsUrl} unreachable: ${(e as Error).message}`);
    }
  }

  /** Send a conversation; stream its answer through `onDelta`; resolve with the final response. */
  async chat(messages: LLMMessage[], opts: ChatOptions = {}): Promise<ChatResult> {
    if (this.nats && !this.nats.closed) {
      let streamed = 0;
      try {
        return await this.viaNats(messages, {
          ...opts,
          onDelta: (d) => {
            streamed++;
            opts.onDelta?.(d);
          },
        });
      } catch (e) {
        // Fall back only while nothing reached the caller: the bridge may be connected to a
        // NATS cluster that has workers.
        if (e instanceof NoWorkerError && streamed === 0) {
          return this.viaHttp(messages, opts, e.message);
        }
        throw e;
      }
    }
    return this.viaHttp(messages, opts, this.natsUnavailable ?? 'NATS connection closed');
  }

  /** The request as the seed defines it, plus the Ailurus extensions used here. */
  private buildRequest(messages: LLMMessage[], opts: ChatOptions): AilurusRequest {
    const c = this.config;
    return {
      trace_id: randomId('t_'),
      user_id: subjectToken('user_id', c.userId),
      session_id: subjectToken('session_id', c.sessionId),
      platform: c.platform,
      model: c.model,
      messages,
      stream: true,
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
      ...(opts.maxTokens ? { max_tokens: opts.maxTokens } : {}),
    };
  }

  private async viaNats(messages: LLMMessage[], opts: ChatOptions): Promise<ChatResult> {
    const nats = this.nats!;
    const { nc } = nats;
    const c = this.config;
    const req = this.buildRequest(messages, opts);
    const h = nats.headers();
    h.set(Headers.contentType, 'application/json');
    h.set(Headers.heartbeat, '1');
    const subject = `llm.request.${c.platform}`;
    const body = jc.encode(req);
    if (c.token) {
      for (const [k, v] of Object.entries(proofHeaders(c.token, subject, req.trace_id, body))) h.set(k, v);
    }

    const inbox = createInbox();
    const sub: Subscription = nc.subscribe(inbox);
    const it = sub[Symbol.asyncIterator]();
    const pending: { p?: Promise<IteratorResult<Msg>> } = {};
    nc.publish(subject, body, { reply: inbox, headers: h });

    let seen = false;
    let finished = false;
    let nextSeq = 0;
    let chunks = 0;
    try {
      for (;;) {
        const wait = seen ? c.silenceMs : c.firstReplyMs;
        const r = await nextWithin(pending, it, wait, opts.signal);
        if (r === 'aborted') throw new LLMError(499, 'request aborted by the caller');
        if (r === 'timeout') {
          finished = true; // nothing to cancel: no worker, or a dead one
          throw seen ? new WorkerSilentError(wait) : new NoWorkerError();
        }
        if (r.done) throw new LLMError(502, 'the reply subscription closed before the final reply');
        const m = r.value;
        // A server without a stream on the subject answers "no responders" (503, empty body).
        if (m.data.length === 0 && m.headers?.code === 503) {
          finished = true;
          throw new NoWorkerError();
        }
        const kind = m.headers?.get(Headers.kind) as ReplyKind | '' | undefined;
        if (!kind) continue; // not a protocol reply (e.g. a stray JetStream ack)
        seen = true;
        if (kind === 'heartbeat') continue;
        if (kind === 'chunk') {
          const chunk = jc.decode(m.data) as LLMChunk;
          if (chunk.seq !== nextSeq) {
            process.emitWarning(`chunk seq ${chunk.seq}, expected ${nextSeq} (trace ${req.trace_id})`);
          }
          nextSeq = chunk.seq + 1;
          chunks++;
          opts.onDelta?.(chunk.delta);
          continue;
        }
        finished = true;
        const resp = jc.decode(m.data) as AilurusResponse;
        if (kind === 'done') return { response: resp, transport: nats.transport, chunks };
        const status = Number(m.headers?.get(Headers.status)) || 500;
        throw new LLMError(status, resp.error ?? `request failed with status ${status}`, resp);
      }
    } finally {
      sub.unsubscribe();
      if (!finished && !nc.isClosed()) {
        // We are giving up early: tell the worker to stop (and stop billing).
        nc.publish(`llm.cancel.${req.trace_id}`);
      }
    }
  }

  private async viaHttp(messages: LLMMessage[], opts: ChatOptions, reason: string): Promise<ChatResult> {
    const c = this.config;
    const started = Date.now();
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
    if (c.token) headers.authorization = `Bearer ${c.token}`;
    const body = {
      model: c.model,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      ...(opts.maxTokens ? { max_tokens: opts.maxTokens } : {}),
    };
    // Abort on the caller's signal, or when the bridge stays silent too long.
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(opts.signal?.reason);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => ctl.abort(new Error('the HTTP bridge went silent')), 60_000);
    };
    arm();
    try {
      const res = await fetch(`${httpBaseUrl(c)}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        signal: ctl.signal,
      });
      const traceId = res.headers.get('x-request-id') ?? randomId('t_');
      if (!res.ok || !res.body) {
        const text = await res.text();
        let message = text;
        try {
          message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
        } catch {
          // not JSON
        }
        throw new LLMError(res.status, `HTTP bridge: ${message}`);
      }
      let content = '';
      let chunks = 0;
      let model = c.model;
      let finishReason: string | undefined;
      let usage: { prompt_tokens?: number; completion_tokens?: number } | undefined;
      const decoder = new TextDecoder();
      let buf = '';
      const reader = res.body.getReader();
      let ended = false;
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const event = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = event
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trimStart())
            .join('\n');
          if (!data) continue;
          if (data === '[DONE]') {
            ended = true;
            break;
          }
          const ev = JSON.parse(data) as {
            model?: string;
            error?: { message?: string; code?: number | string };
            usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
            choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
          };
          if (ev.error) throw new LLMError(Number(ev.error.code) || 502, ev.error.message ?? 'stream error');
          if (ev.model) model = ev.model;
          if (ev.usage) usage = ev.usage;
          for (const choice of ev.choices ?? []) {
            if (choice.finish_reason) finishReason = choice.finish_reason;
            const delta = choice.delta?.content;
            if (delta) {
              content += delta;
              chunks++;
              opts.onDelta?.(delta);
            }
          }
        }
      }
      const response: AilurusResponse = {
        trace_id: traceId,
        success: true,
        model,
        content,
        tokens_input: usage?.prompt_tokens ?? 0,
        tokens_output: usage?.completion_tokens ?? 0,
        cost: 0, // the OpenAI stream carries no price; the quota event and ledger do
        duration_ms: Date.now() - started,
        ...(finishReason ? { finish_reason: finishReason } : {}),
      };
      return { response, transport: 'http', chunks, fallbackReason: reason };
    } finally {
      clearTimeout(idle);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    await this.nats?.close();
  }
}
