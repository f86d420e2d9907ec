#!/usr/bin/env bash
# The benchmark in one command: build in release mode, install the pinned LiteLLM proxy into
# its own venv (.tools/litellm-venv; not deploy/setup.sh's venv), then run `ailurus-bench`,
# which starts nats-server, the fast mock upstream, the worker, the bridge and LiteLLM on
# loopback, drives the load, prints the table and stops everything it started.
#
#   bench/run.sh                 # the full run (a few minutes on 2 cores)
#   bench/run.sh --quick         # no highest-rate search, no 10,000-stream phase
#   bench/run.sh --no-litellm    # skip the LiteLLM side
#   bench/run.sh --phase-ms 5000 # longer phases
#
# The table goes to stdout and to bench/results/latest.md; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

LITELLM_VERSION="1.82.6"
LITELLM_VENV=".tools/litellm-venv"

[ -x .tools/bin/nats-server ] || ./deploy/setup.sh

# 10,000 streams need about 10,000 sockets in the driver, the bridge, the worker and the mock.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

cargo build --release --features bench --bins >&2

args=("$@")
skip_litellm=0
for a in "$@"; do [ "$a" = "--no-litellm" ] && skip_litellm=1; done
if [ "$skip_litellm" = 0 ]; then
  installed="$("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null || true)"
  if ! grep -qx "Version: $LITELLM_VERSION" <<<"$installed"; then
    echo "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (once)" >&2
    if python3 -m venv "$LITELLM_VENV" >&2 &&
      "$LITELLM_VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >&2; then
      :
    else
      echo "LiteLLM could not be installed; the table will say so" >&2
    fi
  fi
fi

mkdir -p bench/results
exec target/release/ailurus-bench --out bench/results/latest.md "${args[@]}"
