#!/usr/bin/env bash
# Relay-mode overhead before the first token: concurrent ConversationRelay calls against a
# streaming fake model whose first token comes after a set delay, at each of BENCH_CALLS, and
# gather calls on the same model beside them (the whole reply at once). Prints p50 / p90 /
# p99 / max; it is not a test and not part of scripts/test.sh. See docs/benchmarks.md
# ("Relay calls: the first token").
#
#   scripts/bench-relay.sh [-- EXTRA BENCH FLAGS]
#
# Builds the release binaries, then starts services of its own on free loopback ports and
# stops them, by PID, when it ends: a Temporal dev server (in memory), secantusd-rs, the api
# and the worker, with an agents file of two model-backed profiles (one `relay`, one `gather`)
# on two numbers. The benchmark binary plays Twilio (signed webhooks and handshakes) and serves
# the fake model (AGENT_MODEL_BASE_URL). No simulator: the benchmark is the caller.
# Results and logs land in .data/bench/relay-<time>/.
#
# Environment (all optional):
#   BENCH_CALLS=20,100        concurrent relay calls, one phase each
#   BENCH_GATHER_CALLS=20     concurrent gather calls (0: no gather phase)
#   BENCH_TURNS=12            lines per call (the first is a warm-up)
#   BENCH_THINK_MS=500        the caller's pause after each reply
#   BENCH_FIRST_TOKEN_MS=300  the fake model's delay before its first token
#   BENCH_TOKEN_GAP_MS=15     the fake model's delay between tokens
#   BENCH_PROFILE=release     cargo profile of the binaries (release or dev)
#   BENCH_SKIP_BUILD=1        use the binaries as they are
#   MONGO_SERVER, STOP_TIMEOUT_S, CARGO_TARGET_DIR: as for scripts/test.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

[[ "${1:-}" == -- ]] && shift
EXTRA=("$@")

BENCH_CALLS="${BENCH_CALLS:-20,100}"
[[ "$BENCH_CALLS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "BENCH_CALLS: numbers separated by commas (got '$BENCH_CALLS')"
BENCH_GATHER_CALLS="$(va_bench_number BENCH_GATHER_CALLS "${BENCH_GATHER_CALLS:-20}")"
BENCH_TURNS="$(va_bench_number BENCH_TURNS "${BENCH_TURNS:-12}")"
BENCH_THINK_MS="$(va_bench_number BENCH_THINK_MS "${BENCH_THINK_MS:-500}")"
BENCH_FIRST_TOKEN_MS="$(va_bench_number BENCH_FIRST_TOKEN_MS "${BENCH_FIRST_TOKEN_MS:-300}")"
BENCH_TOKEN_GAP_MS="$(va_bench_number BENCH_TOKEN_GAP_MS "${BENCH_TOKEN_GAP_MS:-15}")"
ensure_python_venv
ensure_mongo_server
va_bench_binaries relay

va_bench_dirs relay

read -r T_PORT T_HTTP T_METRICS M_PORT A_HTTP A_GRPC MODEL_PORT <<<"$(free_port 7)"
API_URL="http://127.0.0.1:$A_HTTP"
ACCOUNT_SID=ACbe0c4be0c4be0c4be0c4be0c4be0c4be
AUTH_TOKEN="bench-auth-token-$$"
RELAY_NUMBER=+15005550006
GATHER_NUMBER=+15005550007

cat >"$WORK/agents.toml" <<EOF
[profiles.streamed]
instructions = "Answer in one sentence."
greeting = "Hi, this is the benchmark."
voice_mode = "relay"

[profiles.turns]
instructions = "Answer in one sentence."
greeting = "Hi, this is the benchmark."
voice_mode = "gather"

[numbers]
"$RELAY_NUMBER" = "streamed"
"$GATHER_NUMBER" = "turns"
EOF

va_bench_services "$M_PORT" "$T_PORT" "$T_HTTP" "$T_METRICS"

va_unset_args TEMPORAL_
APP_ENV=(
    "${VA_UNSET_ARGS[@]}"
    "TEMPORAL_ADDRESS=http://127.0.0.1:$T_PORT"
    "TEMPORAL_NAMESPACE=default"
    "TEMPORAL_TASK_QUEUE=bench-relay"
    "MONGODB_URI=mongodb://127.0.0.1:$M_PORT/?directConnection=true"
    "MONGODB_DATABASE=bench_relay"
    "TWILIO_ACCOUNT_SID=$ACCOUNT_SID"
    "TWILIO_AUTH_TOKEN=$AUTH_TOKEN"
    "PUBLIC_BASE_URL=$API_URL"
    "API_HTTP_ADDR=127.0.0.1:$A_HTTP"
    "API_GRPC_ADDR=127.0.0.1:$A_GRPC"
    "API_BOOTSTRAP_ADMIN_KEY=$(va_new_api_key)"
    "AGENTS_FILE=$WORK/agents.toml"
    "AGENT_MODEL_BASE_URL=http://127.0.0.1:$MODEL_PORT/v1"
    "AGENT_MODEL=fake"
    "AGENT_MODEL_STREAM=true"
)
va_bench_api "$A_HTTP"
va_bench_worker

log "measuring: relay calls $BENCH_CALLS, gather calls $BENCH_GATHER_CALLS, $BENCH_TURNS lines each ($BENCH_PROFILE)"
BENCH_TWILIO_AUTH_TOKEN="$AUTH_TOKEN" "$BIN_DIR/relay" --api "$API_URL" --account-sid "$ACCOUNT_SID" \
    --model-listen "127.0.0.1:$MODEL_PORT" --relay-number "$RELAY_NUMBER" --gather-number "$GATHER_NUMBER" \
    --calls "$BENCH_CALLS" --gather-calls "$BENCH_GATHER_CALLS" --turns "$BENCH_TURNS" \
    --think-ms "$BENCH_THINK_MS" --first-token-ms "$BENCH_FIRST_TOKEN_MS" \
    --token-gap-ms "$BENCH_TOKEN_GAP_MS" "${EXTRA[@]}" | tee "$OUT/report.txt"
