#!/usr/bin/env python3
"""A streamed LLM request to Ailurus over NATS with nats-py, plus quota events.

    AILURUS_TOKEN=$(cat .ailurus-data/demo-token) .tools/venv/bin/python examples/python/stream.py "hello"

Follows the reply protocol (design §3): subscribe to a fresh inbox, publish the seed
`LLMNATSRequest` on `llm.request.<platform>` with `Ailurus-Heartbeat: 1` and a proof of
possession of the token for this one request (`proof_headers`: the token's id, a time and an
HMAC; neither the token nor its hash alone goes on NATS); no reply within ~1 s means no worker;
then `heartbeat` / `chunk` ({trace_id, seq, delta}) / final `done` or `error` replies, each
gap bounded. Ctrl-C publishes `llm.cancel.<trace_id>`.

When NATS is unreachable or disabled (`NATS_ENABLED=false`) it falls back to the HTTP bridge
(`CODESWITCH_BASE_URL` + `/v1/chat/completions`, streamed), using only the standard library.

Environment: NATS_ENABLED, NATS_URL (default nats://127.0.0.1:4222), CODESWITCH_BASE_URL
(default http://127.0.0.1:18100), AILURUS_USER_ID (default demo), AILURUS_SESSION_ID,
AILURUS_TOKEN, AILURUS_MODEL (default mock), AILURUS_PLATFORM (default gemini).
Answer on stdout; status lines on stderr; exit code 0 on an answer, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import time
import urllib.error
import urllib.request

import nats
from nats.errors import NoServersError, TimeoutError as NatsTimeout

FIRST_REPLY_S = 1.0  # no reply by then: no worker is listening
SILENCE_S = 4.0  # longest gap between replies before the worker is declared lost
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class LLMError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class NoWorker(LLMError):
    def __init__(self) -> None:
        super().__init__(503, "no Ailurus worker is serving this subject")


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def token(field: str, value: str) -> str:
    if not TOKEN_RE.match(value):
        raise SystemExit(f"{field} {value!r} must match [A-Za-z0-9_-]{{1,128}}")
    return value


def config() -> dict:
    env = os.environ
    return {
        "nats_enabled": env.get("NATS_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off"),
        "nats_url": env.get("NATS_URL", "nats://127.0.0.1:4222"),
        "base_url": env.get("CODESWITCH_BASE_URL", "http://127.0.0.1:18100").rstrip("/"),
        "user_id": token("user_id", env.get("AILURUS_USER_ID", "demo")),
        "session_id": token("session_id", env.get("AILURUS_SESSION_ID") or "session_" + secrets.token_urlsafe(9)),
        "token": env.get("AILURUS_TOKEN") or None,
        "model": env.get("AILURUS_MODEL", "mock"),
        "platform": env.get("AILURUS_PLATFORM", "gemini"),
    }


def proof_headers(token: str, subject: str, trace_id: str, body: bytes, headers: dict | None = None) -> dict:
    """The proof of possession of `token` for one request (examples/nats-cli.md): good for
    this subject, trace id, body and Ailurus-Format/-Op/-Model headers only, once, within 60 s."""
    headers = headers or {}
    key = hmac.new(token.encode(), b"ailurus-proof-key-v1", hashlib.sha256).hexdigest()
    now = str(int(time.time()))
    text = "\n".join([
        "ailurus-proof-v1", subject, trace_id, now,
        headers.get("Ailurus-Format", ""), headers.get("Ailurus-Op", ""), headers.get("Ailurus-Model", ""),
        hashlib.sha256(body).hexdigest(),
    ])
    return {
        "Ailurus-Token-Id": hashlib.sha256(token.encode()).hexdigest(),
        "Ailurus-Proof-Time": now,
        "Ailurus-Proof": hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest(),
    }


async def stream_over_nats(nc, cfg: dict, prompt: str) -> tuple[dict, int]:
    """One streamed request; prints deltas; returns (LLMNATSResponse, chunks)."""
    trace_id = "t_" + secrets.token_urlsafe(9)
    request = {
        "trace_id": trace_id,
        "user_id": cfg["user_id"],
        "session_id": cfg["session_id"],
        "platform": cfg["platform"],
        "model": cfg["model"],
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }
    headers = {"Content-Type": "application/json", "Ailurus-Heartbeat": "1"}
    subject = f"llm.request.{cfg['platform']}"
    body = json.dumps(request).encode()
    if cfg["token"]:
        headers.update(proof_headers(cfg["token"], subject, trace_id, body))
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)  # subscribe first, then publish
    await nc.publish(subject, body, reply=inbox, headers=headers)
    seen = finished = False
    chunks = next_seq = 0
    try:
        while True:
            wait = SILENCE_S if seen else FIRST_REPLY_S
            try:
                msg = await sub.next_msg(timeout=wait)
            except NatsTimeout:
                finished = True
                if seen:
                    raise LLMError(504, f"the worker went silent for {wait:.0f} s (it may have died)")
                raise NoWorker()
            hdrs = msg.headers or {}
            if not msg.data and hdrs.get("Status") == "503":  # no responders
                finished = True
                raise NoWorker()
            kind = hdrs.get("Ailurus-Kind")
            if kind is None:
                continue  # not a protocol reply
            seen = True
            if kind == "heartbeat":
                continue
            body = json.loads(msg.data)
            if kind == "chunk":
                if body["seq"] != next_seq:
                    log(f"warning: chunk seq {body['seq']}, expected {next_seq}")
                next_seq = body["seq"] + 1
                chunks += 1
                sys.stdout.write(body["delta"])
                sys.stdout.flush()
                continue
            finished = True
            if kind == "done":
                return body, chunks
            raise LLMError(int(hdrs.get("Ailurus-Status", "500")), body.get("error") or "request failed")
    finally:
        await sub.unsubscribe()
        if not finished and nc.is_connected:
            await nc.publish(f"llm.cancel.{trace_id}", b"")  # we gave up: stop the worker
            await nc.flush()


def stream_over_http(cfg: dict, prompt: str) -> tuple[dict, int]:
    """The same request through the HTTP bridge (OpenAI Chat Completions, streamed)."""
    started = time.monotonic()
    body = {
        "model": cfg["model"],
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = urllib.request.Request(
        cfg["base_url"] + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "accept": "text/event-stream"},
        method="POST",
    )
    if cfg["token"]:
        req.add_header("authorization", "Bearer " + cfg["token"])
    content, chunks, usage = "", 0, {}
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            trace_id = resp.headers.get("x-request-id", "")
            for raw in resp:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                ev = json.loads(data)
                if ev.get("error"):
                    raise LLMError(502, ev["error"].get("message", "stream error"))
                usage = ev.get("usage") or usage
                for choice in ev.get("choices", []):
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        content += delta
                        chunks += 1
                        sys.stdout.write(delta)
                        sys.stdout.flush()
    except urllib.error.HTTPError as e:
        raise LLMError(e.code, f"HTTP bridge: {e.read().decode(errors='replace')}") from None
    return {
        "trace_id": trace_id,
        "success": True,
        "model": cfg["model"],
        "content": content,
        "tokens_input": usage.get("prompt_tokens", 0),
        "tokens_output": usage.get("completion_tokens", 0),
        "cost": 0.0,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }, chunks


async def quiet(_e: Exception) -> None:
    """nats-py logs every failed connect attempt with a traceback; the fallback says enough."""


async def main() -> int:
    prompt = " ".join(sys.argv[1:]) or "Hello from nats-py"
    cfg = config()
    nc = None
    reason = "NATS_ENABLED=false"
    if cfg["nats_enabled"]:
        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    cfg["nats_url"],
                    name="ailurus-python-example",
                    connect_timeout=2,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    error_cb=quiet,
                ),
                timeout=3,
            )
        except (NoServersError, OSError, asyncio.TimeoutError) as e:
            reason = f"NATS at {cfg['nats_url']} unreachable: {str(e) or type(e).__name__}"
    quota_events: asyncio.Queue = asyncio.Queue()
    try:
        if nc is not None:
            log(f"[nats-tcp] connected to {cfg['nats_url']} as {cfg['user_id']} (session {cfg['session_id']})")

            async def on_quota(msg) -> None:
                ev = json.loads(msg.data)
                log(
                    f"[quota] {ev['user_id']}: {ev['quota_remain']} remain of {ev['quota_total']} "
                    f"(last cost {ev['last_cost']}, trace {ev.get('trace_id')})"
                )
                await quota_events.put(ev)

            await nc.subscribe(f"user.{cfg['user_id']}.quota", cb=on_quota)
            transport = "nats-tcp"
            resp, chunks = await stream_over_nats(nc, cfg, prompt)
        else:
            log(f"[http] {reason}; using {cfg['base_url']}")
            transport = "http"
            resp, chunks = await asyncio.to_thread(stream_over_http, cfg, prompt)
        print()
        log(
            f"[{transport}] {resp['tokens_input']} in · {resp['tokens_output']} out tokens · ${resp['cost']:.6f} · "
            f"{resp['duration_ms']} ms · {chunks} chunks · trace {resp['trace_id']}"
        )
        if nc is not None and cfg["token"]:
            # The worker settles right after the final reply; wait briefly for our event.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    ev = await asyncio.wait_for(quota_events.get(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    log("[quota] no quota event within 3 s")
                    break
                if ev.get("trace_id") == resp["trace_id"]:
                    break
        return 0
    except LLMError as e:
        log(f"error ({e.status}): {e}")
        return 1
    finally:
        if nc is not None:
            await nc.drain()


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
