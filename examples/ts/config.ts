/**
 * Configuration from the seed's environment variables (ARCH_Products.md, "Gemini CLI
 * Environment"), plus the API token Ailurus needs in token mode.
 *
 * | variable              | default                   | meaning                                   |
 * |-----------------------|---------------------------|-------------------------------------------|
 * | `NATS_ENABLED`        | `true`                    | `false`: always use the HTTP bridge        |
 * | `NATS_URL`            | `ws://127.0.0.1:9222`     | `ws://`/`wss://` → WebSocket, else TCP     |
 * | `USE_CODESWITCH`      | `true`                    | `false`: the HTTP fallback goes to `NEW_API_URL` |
 * | `CODESWITCH_BASE_URL` | `http://127.0.0.1:18100`  | the HTTP bridge (fallback)                 |
 * | `NEW_API_URL`         | (none)                    | NEW-API (or an Ailurus bridge) for the fallback when `USE_CODESWITCH=false` |
 * | `NEW_API_TOKEN`       | (none)                    | the token when `AILURUS_TOKEN` is not set  |
 * | `AILURUS_USER_ID`     | `demo`                    | seed `user_id` (must be the token's user)  |
 * | `AILURUS_SESSION_ID`  | a random `session_…`      | seed `session_id`                          |
 * | `NATS_USER`           | (none)                    | NATS user (`ailurus up`: `.ailurus-data/nats-auth`) |
 * | `NATS_PASSWORD`       | (none)                    | its password                              |
 * | `AILURUS_TOKEN`       | (none)                    | API token; never sent: it signs requests  |
 * | `AILURUS_MODEL`       | `mock`                    | model name                                 |
 * | `AILURUS_PLATFORM`    | `gemini`                  | subject `llm.request.<platform>`           |
 */

import { randomBytes } from 'node:crypto';
import type { Platform } from './types.js';

export interface ClientConfig {
  natsEnabled: boolean;
  natsUrl: string;
  /** NATS user and password, when the server requires them. */
  natsUser?: string;
  natsPassword?: string;
  codeswitchBaseUrl: string;
  /** `USE_CODESWITCH`: whether the HTTP fallback goes to CodeSwitch (the bridge) or NEW-API. */
  useCodeswitch: boolean;
  /** `NEW_API_URL`: the HTTP fallback when `USE_CODESWITCH=false` (same OpenAI-shaped API). */
  newApiUrl?: string;
  userId: string;
  sessionId: string;
  token?: string;
  model: string;
  platform: Platform;
  /** Wait for the first reply before deciding that no worker listens. */
  firstReplyMs: number;
  /** Longest silence (no chunk, no heartbeat) before the worker is declared lost. */
  silenceMs: number;
  /** Bound on the NATS connection attempt before falling back to HTTP. */
  connectTimeoutMs: number;
}

function flag(v: string | undefined, dflt: boolean): boolean {
  if (v === undefined || v.trim() === '') return dflt;
  return !['0', 'false', 'no', 'off'].includes(v.trim().toLowerCase());
}

/** A token for subjects: `[A-Za-z0-9_-]{1,128}` (design §2). */
export function randomId(prefix: string): string {
  return `${prefix}${randomBytes(9).toString('base64url')}`;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const platform = (env.AILURUS_PLATFORM ?? 'gemini') as Platform;
  if (!['claude', 'codex', 'gemini', 'openai'].includes(platform)) {
    throw new Error(`AILURUS_PLATFORM=${platform}: expected claude, codex, gemini or openai`);
  }
  return {
    natsEnabled: flag(env.NATS_ENABLED, true),
    natsUrl: env.NATS_URL ?? 'ws://127.0.0.1:9222',
    natsUser: env.NATS_USER || undefined,
    natsPassword: env.NATS_PASSWORD || undefined,
    codeswitchBaseUrl: (env.CODESWITCH_BASE_URL ?? 'http://127.0.0.1:18100').replace(/\/+$/, ''),
    useCodeswitch: flag(env.USE_CODESWITCH, true),
    newApiUrl: env.NEW_API_URL ? env.NEW_API_URL.replace(/\/+$/, '') : undefined,
    userId: env.AILURUS_USER_ID ?? 'demo',
    sessionId: env.AILURUS_SESSION_ID ?? randomId('session_'),
    // The seed's users hold a NEW-API token; an Ailurus token takes its place.
    token: env.AILURUS_TOKEN || env.NEW_API_TOKEN || undefined,
    model: env.AILURUS_MODEL ?? 'mock',
    platform,
    firstReplyMs: 1000,
    silenceMs: 4000,
    connectTimeoutMs: 2000,
  };
}

/** Where the HTTP fallback goes: the CodeSwitch bridge, or NEW-API when `USE_CODESWITCH=false`. */
export function httpBaseUrl(c: ClientConfig): string {
  if (c.useCodeswitch) return c.codeswitchBaseUrl;
  if (!c.newApiUrl) throw new Error('USE_CODESWITCH=false needs NEW_API_URL for the HTTP fallback');
  return c.newApiUrl;
}
