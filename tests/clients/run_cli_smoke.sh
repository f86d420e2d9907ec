#!/usr/bin/env bash
# Smoke-test the real CLIs against a running Ailurus bridge, fully offline:
#   Claude Code (`claude -p`), Codex CLI (`codex exec`) and Gemini CLI (`gemini -p`).
#
# Start a stack first (`ailurus up`), then pass its demo token:
#   API_KEY=$(cat .ailurus-data/demo-token) tests/clients/run_cli_smoke.sh
# (or run the stack with AILURUS__AUTH__MODE=open and any key)
# then
#   tests/clients/run_cli_smoke.sh                  # bridge at http://127.0.0.1:18100
#   BRIDGE=http://127.0.0.1:47135 tests/clients/run_cli_smoke.sh claude codex
#
# Manual, slow and needs npm: the CLIs are installed (pinned below, override with
# CLAUDE_VERSION / CODEX_VERSION / GEMINI_VERSION) into CLI_DIR, not into the repository.
# Every CLI gets its own temporary HOME, so nothing of yours is read or written.
#
# Environment:
#   BRIDGE          bridge URL (default http://127.0.0.1:18100)
#   MODEL           model to ask for (default mock)
#   API_KEY         token the CLIs send (default a dummy, fine in open auth mode)
#   CLI_DIR         npm prefix for the CLIs (default ${TMPDIR:-/tmp}/ailurus-cli-smoke)
#   CODEX_DEFAULTS  1 (default): run Codex with its default tools (hosted web_search and the
#                   multi-agent "namespace" tool); 0 disables both in config.toml
#   TIMEOUT         seconds per CLI run (default 180)
#   SETUP           manual (default): the settings below, with MODEL; connect: each CLI is set
#                   up only by `$AILURUS connect <cli> --write` in its empty HOME, with no model
#                   variable at all (the client's own default model), as a new user would
#   AILURUS         the ailurus binary for SETUP=connect (default: ailurus on PATH)
# Exit status: the number of CLIs that did not print a mock answer.
set -uo pipefail

BRIDGE="${BRIDGE:-http://127.0.0.1:18100}"
BRIDGE="${BRIDGE%/}"
MODEL="${MODEL:-mock}"
CLI_DIR="${CLI_DIR:-${TMPDIR:-/tmp}/ailurus-cli-smoke}"
TIMEOUT="${TIMEOUT:-180}"
CODEX_DEFAULTS="${CODEX_DEFAULTS:-1}"
SETUP="${SETUP:-manual}"
AILURUS="${AILURUS:-ailurus}"
CLAUDE_VERSION="${CLAUDE_VERSION:-2.1.197}"
CODEX_VERSION="${CODEX_VERSION:-0.171.0}"
GEMINI_VERSION="${GEMINI_VERSION:-0.61.0}"
KEY="${API_KEY:-sk-ailurus-smoke}"
PROMPT="say hi"

clis=("$@")
[ "${#clis[@]}" -eq 0 ] && clis=(claude codex gemini)

if ! curl -fsS -m 5 "$BRIDGE/healthz" >/dev/null; then
  echo "smoke: no bridge answers at $BRIDGE/healthz (start one with: target/debug/ailurus up)" >&2
  exit 100
fi

# --- install ------------------------------------------------------------------------------
mkdir -p "$CLI_DIR"
need=()
[ -x "$CLI_DIR/node_modules/.bin/claude" ] || need+=("@anthropic-ai/claude-code@$CLAUDE_VERSION")
[ -x "$CLI_DIR/node_modules/.bin/codex" ] || need+=("@openai/codex@$CODEX_VERSION")
[ -x "$CLI_DIR/node_modules/.bin/gemini" ] || need+=("@google/gemini-cli@$GEMINI_VERSION")
if [ "${#need[@]}" -gt 0 ]; then
  command -v npm >/dev/null || { echo "smoke: npm is needed to install ${need[*]}" >&2; exit 100; }
  echo "smoke: installing ${need[*]} into $CLI_DIR"
  [ -f "$CLI_DIR/package.json" ] || (cd "$CLI_DIR" && npm init -y >/dev/null)
  (cd "$CLI_DIR" && npm install --no-audit --no-fund --loglevel=error "${need[@]}") || exit 100
fi
BIN="$CLI_DIR/node_modules/.bin"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ailurus-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/project"

failures=0
version_of() { # npm package name
  node -e "console.log(require('$CLI_DIR/node_modules/$1/package.json').version)" 2>/dev/null || echo "?"
}
report() { # name, exit code, output file, error file
  local name=$1 rc=$2 out=$3 err=$4
  local answer
  answer=$(grep -m1 -o 'Mock answer to .*' "$out" | cut -c1-160)
  if [ "$rc" -eq 0 ] && [ -n "$answer" ]; then
    echo "PASS $name: $answer"
  else
    failures=$((failures + 1))
    echo "FAIL $name (exit $rc)"
    echo "  stdout: $(head -c 600 "$out")"
    echo "  stderr (last lines):"
    grep -v '^$' "$err" | tail -8 | sed 's/^/    /'
  fi
}

run_claude() {
  local home="$WORK/claude-home"
  mkdir -p "$home"
  # ANTHROPIC_AUTH_TOKEN (Authorization: Bearer) works the same as ANTHROPIC_API_KEY (x-api-key).
  (cd "$WORK/project" && env -i PATH="$PATH" HOME="$home" TERM=dumb \
    ANTHROPIC_BASE_URL="$BRIDGE" ANTHROPIC_API_KEY="$KEY" \
    ANTHROPIC_MODEL="$MODEL" ANTHROPIC_SMALL_FAST_MODEL="$MODEL" ANTHROPIC_DEFAULT_HAIKU_MODEL="$MODEL" \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_TELEMETRY=1 DISABLE_ERROR_REPORTING=1 \
    DISABLE_AUTOUPDATER=1 \
    timeout "$TIMEOUT" "$BIN/claude" -p "$PROMPT" </dev/null >"$WORK/claude.out" 2>"$WORK/claude.err")
  local rc=$?
  report "claude $(version_of @anthropic-ai/claude-code)" "$rc" "$WORK/claude.out" "$WORK/claude.err"
}

run_codex() {
  local home="$WORK/codex-home"
  mkdir -p "$home"
  {
    echo "model = \"$MODEL\""
    echo 'model_provider = "ailurus"'
    echo 'check_for_update_on_startup = false'
    if [ "$CODEX_DEFAULTS" != 1 ]; then
      echo 'web_search = "disabled"   # the hosted web_search tool cannot be forwarded'
      echo '[agents]'
      echo 'enabled = false           # the multi-agent tools come as a "namespace" tool'
    fi
    echo '[model_providers.ailurus]'
    echo 'name = "Ailurus"'
    echo "base_url = \"$BRIDGE/v1\""
    echo 'wire_api = "responses"'
    echo 'env_key = "AILURUS_API_KEY"'
  } >"$home/config.toml"
  (cd "$WORK/project" && env -i PATH="$PATH" HOME="$home" CODEX_HOME="$home" TERM=dumb \
    AILURUS_API_KEY="$KEY" \
    timeout "$TIMEOUT" "$BIN/codex" exec --skip-git-repo-check "$PROMPT" </dev/null \
    >"$WORK/codex.out" 2>"$WORK/codex.err")
  local rc=$?
  report "codex $(version_of @openai/codex)" "$rc" "$WORK/codex.out" "$WORK/codex.err"
}

run_gemini() {
  local home="$WORK/gemini-home"
  mkdir -p "$home/.gemini"
  cat >"$home/.gemini/settings.json" <<EOF
{
  "security": { "auth": { "selectedType": "gemini-api-key" } },
  "model": { "name": "$MODEL" },
  "privacy": { "usageStatisticsEnabled": false },
  "telemetry": { "enabled": false },
  "general": { "disableAutoUpdate": true, "disableUpdateNag": true }
}
EOF
  (cd "$WORK/project" && env -i PATH="$PATH" HOME="$home" TERM=dumb \
    GOOGLE_GEMINI_BASE_URL="$BRIDGE" GEMINI_API_KEY="$KEY" GEMINI_CLI_TRUST_WORKSPACE=true \
    timeout "$TIMEOUT" "$BIN/gemini" -p "$PROMPT" </dev/null >"$WORK/gemini.out" 2>"$WORK/gemini.err")
  local rc=$?
  report "gemini $(version_of @google/gemini-cli)" "$rc" "$WORK/gemini.out" "$WORK/gemini.err"
}

# SETUP=connect: `ailurus connect <cli> --write` in an empty HOME is the only setup; the CLI
# runs with nothing but PATH, HOME and TERM (plus the key Codex reads from the environment, as
# `ailurus connect codex` says to export, and the switches that keep Claude Code offline).
connect() { # cli, home
  env -i PATH="$PATH" HOME="$2" "$AILURUS" connect "$1" --write --token "$KEY" --bridge "$BRIDGE" \
    >"$WORK/$1.connect" 2>&1 || { echo "FAIL $1: ailurus connect $1 --write"; cat "$WORK/$1.connect"; return 1; }
}

connect_claude() {
  local home="$WORK/claude-home"
  mkdir -p "$home"
  connect claude "$home" || { failures=$((failures + 1)); return; }
  (cd "$WORK/project" && env -i PATH="$PATH" HOME="$home" TERM=dumb \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 \
    timeout "$TIMEOUT" "$BIN/claude" -p "$PROMPT" </dev/null >"$WORK/claude.out" 2>"$WORK/claude.err")
  local rc=$?
  report "claude $(version_of @anthropic-ai/claude-code) (ailurus connect)" "$rc" "$WORK/claude.out" "$WORK/claude.err"
}

connect_codex() {
  local home="$WORK/codex-home"
  mkdir -p "$home"
  connect codex "$home" || { failures=$((failures + 1)); return; }
  (cd "$WORK/project" && env -i PATH="$PATH" HOME="$home" TERM=dumb AILURUS_API_KEY="$KEY" \
    timeout "$TIMEOUT" "$BIN/codex" exec --skip-git-repo-check "$PROMPT" </dev/null \
    >"$WORK/codex.out" 2>"$WORK/codex.err")
  local rc=$?
  report "codex $(version_of @openai/codex) (ailurus connect)" "$rc" "$WORK/codex.out" "$WORK/codex.err"
}

connect_gemini() {
  local home="$WORK/gemini-home"
  mkdir -p "$home"
  connect gemini "$home" || { failures=$((failures + 1)); return; }
  (cd "$WORK/project" && env -i PATH="$PATH" HOME="$home" TERM=dumb \
    timeout "$TIMEOUT" "$BIN/gemini" -p "$PROMPT" --skip-trust </dev/null >"$WORK/gemini.out" 2>"$WORK/gemini.err")
  local rc=$?
  report "gemini $(version_of @google/gemini-cli) (ailurus connect)" "$rc" "$WORK/gemini.out" "$WORK/gemini.err"
}

for c in "${clis[@]}"; do
  [ "$SETUP" = connect ] && case "$c" in claude | codex | gemini) c="connect_$c" ;; esac
  case "$c" in
    claude) run_claude ;;
    codex) run_codex ;;
    gemini) run_gemini ;;
    connect_claude) connect_claude ;;
    connect_codex) connect_codex ;;
    connect_gemini) connect_gemini ;;
    *) echo "smoke: unknown CLI $c (claude, codex, gemini)" >&2; failures=$((failures + 1)) ;;
  esac
done
exit "$failures"
