#!/usr/bin/env bash
# Live-session overhead before the first token: SESSIONS concurrent browser chats over the
# api's WebSocket (/api/live/chat) with the scripted agent (no model time), measured at the
# client: prompt out to first token in, to the whole reply, and the reply to the turn's
# settlement (the durable signal, after the reply). Prints p50 / p90 / p99 / max; it is not a
# test and not part of scripts/test.sh. See docs/benchmarks.md ("Live sessions").
#
#   scripts/bench-live.sh
#
# Starts its own Temporal dev server (in memory), secantusd-rs, api and worker on free
# loopback ports and stops them, by PID, when it ends. Results land in .data/bench/live-<time>/.
#
# Environment (all optional):
#   BENCH_SESSIONS=20      chats open at once
#   BENCH_TURNS=20         turns per chat (the first is a warm-up)
#   BENCH_THINK_MS=200     think time between turns
#   BENCH_PROFILE=release  cargo profile of the binaries (release or dev)
#   BENCH_SKIP_BUILD=1     use the binaries as they are
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

BENCH_SESSIONS="$(va_bench_number BENCH_SESSIONS "${BENCH_SESSIONS:-20}")"
BENCH_TURNS="$(va_bench_number BENCH_TURNS "${BENCH_TURNS:-20}")"
BENCH_THINK_MS="$(va_bench_number BENCH_THINK_MS "${BENCH_THINK_MS:-200}")"
ensure_python_venv
ensure_mongo_server
va_bench_binaries live

va_bench_dirs live

read -r T_PORT T_HTTP T_METRICS M_PORT A_HTTP A_GRPC <<<"$(free_port 6)"
API_URL="http://127.0.0.1:$A_HTTP"
KEY="$(va_new_api_key)"

va_bench_services "$M_PORT" "$T_PORT" "$T_HTTP" "$T_METRICS"

va_unset_args TEMPORAL_
APP_ENV=(
    "${VA_UNSET_ARGS[@]}"
    -u AGENTS_FILE -u AGENT_MODEL_BASE_URL
    "TEMPORAL_ADDRESS=http://127.0.0.1:$T_PORT"
    "TEMPORAL_NAMESPACE=default"
    "TEMPORAL_TASK_QUEUE=bench-live"
    "MONGODB_URI=mongodb://127.0.0.1:$M_PORT/?directConnection=true"
    "MONGODB_DATABASE=bench_live"
    "TWILIO_ACCOUNT_SID=ACbe0c4be0c4be0c4be0c4be0c4be0c4be"
    "TWILIO_AUTH_TOKEN=bench-auth-token"
    "PUBLIC_BASE_URL=$API_URL"
    "API_HTTP_ADDR=127.0.0.1:$A_HTTP"
    "API_GRPC_ADDR=127.0.0.1:$A_GRPC"
    "API_BOOTSTRAP_ADMIN_KEY=$KEY"
)
va_bench_api "$A_HTTP"
va_bench_worker

log "measuring: $BENCH_SESSIONS chats x $BENCH_TURNS turns, think $BENCH_THINK_MS ms ($BENCH_PROFILE)"
VOICE_AGENT_API_KEY="$KEY" "$BIN_DIR/live" --api "$API_URL" --sessions "$BENCH_SESSIONS" \
    --turns "$BENCH_TURNS" --think-ms "$BENCH_THINK_MS" | tee "$OUT/report.txt"
