/**
 * NATS connection management for the Gemini CLI "NATS mode" (seed:
 * `packages/core/src/nats/nats-client.ts`, a WebSocket NATS client).
 *
 * - `ws://` / `wss://` URLs use `nats.ws` (the browser/WebSocket build of nats.js). Node 20 has
 *   no global `WebSocket` (Node 22 has), so the `ws` package is installed as one when missing.
 * - `nats://` / `tls://` / `host:port` use `nats` (nats.js v2, TCP for Node).
 *
 * Both expose the same `NatsConnection` API, so the rest of the client does not care.
 * Besides the connection, this module knows the user-event subjects of design §2:
 * `user.<id>.quota` (QuotaChangeEvent) and `user.<id>.presence` (online status).
 */

import {
  connect as connectTcp,
  headers as tcpHeaders,
  JSONCodec,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from 'nats';
import { connect as connectWs, headers as wsHeaders } from 'nats.ws';
import { WebSocket as NodeWebSocket } from 'ws';
import type { QuotaChangeEvent, Transport } from './types.js';

/** Subject tokens from input must match this (design §2). */
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

export function subjectToken(field: string, value: string): string {
  if (!TOKEN.test(value)) {
    throw new Error(`${field} ${JSON.stringify(value)} must match [A-Za-z0-9_-]{1,128}`);
  }
  return value;
}

export interface PresenceEvent {
  user_id: string;
  session_id?: string;
  status: 'online' | 'offline';
  client: string;
  timestamp: string;
}

export interface NatsClientOptions {
  url: string;
  /** Connection name shown by `nats server report connections`. */
  name?: string;
  /** Bound on the first connection attempt. */
  timeoutMs?: number;
  /** NATS user and password (`ailurus up`'s server requires the ones in `.ailurus-data/nats-auth`). */
  user?: string;
  pass?: string;
}

const jc = JSONCodec();

function isWebSocketUrl(url: string): boolean {
  return /^wss?:\/\//i.test(url.trim());
}

/** A connected NATS client over WebSocket or TCP. */
export class NatsClient {
  private constructor(
    readonly nc: NatsConnection,
    readonly transport: Extract<Transport, 'nats-ws' | 'nats-tcp'>,
    private readonly mkHeaders: () => MsgHdrs,
  ) {}

  /** Connect; rejects when the server cannot be reached within `timeoutMs`. */
  static async connect(opts: NatsClientOptions): Promise<NatsClient> {
    const common = {
      servers: opts.url,
      name: opts.name ?? 'gemini-cli-nats-mode',
      timeout: opts.timeoutMs ?? 2000,
      // Keep reconnecting after a successful first connect (requests in between fail fast
      // on their first-reply bound); the first connect itself is not retried.
      maxReconnectAttempts: -1,
      waitOnFirstConnect: false,
      ...(opts.user ? { user: opts.user, pass: opts.pass ?? '' } : {}),
    };
    if (isWebSocketUrl(opts.url)) {
      const g = globalThis as { WebSocket?: unknown };
      if (typeof g.WebSocket === 'undefined') g.WebSocket = NodeWebSocket;
      const nc = (await connectWs(common)) as unknown as NatsConnection;
      return new NatsClient(nc, 'nats-ws', () => wsHeaders() as unknown as MsgHdrs);
    }
    const nc = await connectTcp(common);
    return new NatsClient(nc, 'nats-tcp', () => tcpHeaders());
  }

  /** Fresh message headers of the right implementation for this connection. */
  headers(): MsgHdrs {
    return this.mkHeaders();
  }

  get closed(): boolean {
    return this.nc.isClosed();
  }

  /** Follow `user.<id>.quota`: one QuotaChangeEvent per balance change. */
  subscribeQuota(userId: string, onEvent: (ev: QuotaChangeEvent) => void): Subscription {
    const subject = `user.${subjectToken('user_id', userId)}.quota`;
    return this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return;
        try {
          onEvent(jc.decode(msg.data) as QuotaChangeEvent);
        } catch {
          // Not JSON: ignore rather than crash the CLI.
        }
      },
    });
  }

  /** Publish the session's online status on `user.<id>.presence` (kept by USER_EVENTS). */
  publishPresence(userId: string, sessionId: string | undefined, status: PresenceEvent['status']): void {
    const ev: PresenceEvent = {
      user_id: subjectToken('user_id', userId),
      session_id: sessionId,
      status,
      client: 'gemini-cli-nats-mode',
      timestamp: new Date().toISOString(),
    };
    this.nc.publish(`user.${userId}.presence`, jc.encode(ev));
  }

  /** Flush what is pending and close. */
  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close();
    }
  }
}
