/**
 * NATS message types of the Gemini CLI "NATS mode" (seed: `packages/core/src/nats/types.ts`,
 * `ARCH_Products.md` § Data Types). The four seed interfaces are copied exactly; what Ailurus
 * adds is in separate, optional extension interfaces so a seed-only peer never sees a
 * required field it does not know.
 */

// ---- Seed types (exactly as in ARCH_Products.md) -------------------------------------------

/** The seed names `LLMMessage` without spelling it out; this is what workers read. */
export interface LLMMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface LLMNATSRequest {
  trace_id: string;
  user_id: string;
  session_id?: string;
  platform: 'claude' | 'codex' | 'gemini';
  model: string;
  messages: LLMMessage[];
  stream: boolean;
  metadata?: Record<string, string>;
}

export interface LLMNATSResponse {
  trace_id: string;
  success: boolean;
  model: string;
  content: string;
  tokens_input: number;
  tokens_output: number;
  cost: number;
  duration_ms: number;
  error?: string;
}

export interface QuotaChangeEvent {
  user_id: string;
  quota_total: number;
  quota_used: number;
  quota_remain: number;
  last_cost: number;
  model?: string;
  trace_id?: string;
  timestamp: string;
}

/** One streamed piece of the answer (`Ailurus-Kind: chunk`); `seq` counts from 0. */
export interface LLMChunk {
  trace_id: string;
  seq: number;
  delta: string;
}

// ---- Ailurus extensions (all optional) -----------------------------------------------------

/** Optional request fields Ailurus understands (design §3). */
export interface LLMRequestExtensions {
  max_tokens?: number;
  temperature?: number;
  system?: string;
  /**
   * The seed's API token in the body: refused on NATS (the audit stream keeps every request
   * as sent); send the proof headers instead (`proofHeaders`).
   */
  token?: string;
}

/** Optional response fields Ailurus sends. */
export interface LLMResponseExtensions {
  finish_reason?: string;
  usage_estimated?: boolean;
  upstream_ms?: number;
}

/** Ailurus also serves `llm.request.openai` (generic OpenAI Chat clients). */
export type Platform = LLMNATSRequest['platform'] | 'openai';

export type AilurusRequest = Omit<LLMNATSRequest, 'platform'> & LLMRequestExtensions & { platform: Platform };
export type AilurusResponse = LLMNATSResponse & LLMResponseExtensions;

/** Reply-protocol header names and values (`src/bus/headers.rs`). */
export const Headers = {
  kind: 'Ailurus-Kind',
  status: 'Ailurus-Status',
  heartbeat: 'Ailurus-Heartbeat',
  tokenId: 'Ailurus-Token-Id',
  proofTime: 'Ailurus-Proof-Time',
  proof: 'Ailurus-Proof',
  contentType: 'Content-Type',
} as const;

export type ReplyKind = 'chunk' | 'heartbeat' | 'done' | 'error';

/** Which way an answer travelled. */
export type Transport = 'nats-ws' | 'nats-tcp' | 'http';
