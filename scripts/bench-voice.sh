#!/usr/bin/env bash
# Voice turn overhead: how long the api takes from a <Gather> webhook arriving to the TwiML
# answer leaving, with the scripted agent (built-in rules, no agents file), under CALLS
# concurrent simulated inbound calls. Prints p50 / p90 / p99 / max and counts; it is not a test
# and not part of scripts/test.sh. See docs/benchmarks.md ("Voice turn overhead").
#
#   scripts/bench-voice.sh [-- EXTRA BENCH FLAGS]
#
# It builds the release binaries, then starts services of its own on free loopback ports and
# stops them, by PID, when it ends:
#   - a Temporal dev server, in memory, with the dynamic-config poll caps of scripts/lib.sh;
#   - secantusd-rs (MongoDB wire protocol) with a throw-away store;
#   - the Twilio simulator (release, RUST_LOG=warn);
#   - voice-agent-api (release, LOG_FORMAT=json, RUST_LOG=warn,tower_http=debug: one
#     "finished processing request" line per webhook, which the benchmark reads) and
#     voice-agent-worker (release, RUST_LOG=warn).
# Results (JSON, report, logs) land in .data/bench/voice-<time>/.
#
# Environment (all optional):
#   BENCH_CALLS=20            concurrent calls
#   BENCH_LINES=15            lines per call, the last one "bye" (one gather turn each)
#   BENCH_TURNS=2000          gather turns to measure at least (whole calls)
#   BENCH_THINK_MS=200        the caller's think time before each line
#   BENCH_WARMUP_CALLS=20     calls of the warm-up wave, not measured (0: none)
#   BENCH_SILENCE_EVERY=0     every Nth line silent: re-prompts answered without the agent,
#                             reported apart by the simulator (diagnostic; 0: never)
#   BENCH_CALL_SECOND_MS=10   the simulator's --call-second-ms
#   BENCH_SKIP_BUILD=1        use the release binaries as they are
#   MONGO_SERVER, STOP_TIMEOUT_S, CARGO_TARGET_DIR: as for scripts/test.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

[[ "${1:-}" == -- ]] && shift
EXTRA=("$@")

BENCH_CALLS="$(va_bench_number BENCH_CALLS "${BENCH_CALLS:-20}")"
BENCH_LINES="$(va_bench_number BENCH_LINES "${BENCH_LINES:-15}")"
BENCH_TURNS="$(va_bench_number BENCH_TURNS "${BENCH_TURNS:-2000}")"
BENCH_THINK_MS="$(va_bench_number BENCH_THINK_MS "${BENCH_THINK_MS:-200}")"
BENCH_WARMUP_CALLS="$(va_bench_number BENCH_WARMUP_CALLS "${BENCH_WARMUP_CALLS:-20}")"
BENCH_SILENCE_EVERY="$(va_bench_number BENCH_SILENCE_EVERY "${BENCH_SILENCE_EVERY:-0}")"
BENCH_CALL_SECOND_MS="$(va_bench_number BENCH_CALL_SECOND_MS "${BENCH_CALL_SECOND_MS:-10}")"

ACCOUNT_SID="ACbe0c4be0c4be0c4be0c4be0c4be0c4be"
AUTH_TOKEN="bench-auth-token"
OURS="+15005550006"

ensure_python_venv
ensure_mongo_server
[[ "$(basename "$MONGO_SERVER_BIN")" == secantusd-rs ]] ||
    warn "using $(basename "$MONGO_SERVER_BIN"), not secantusd-rs: the figures are not comparable"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release (the first time takes 10+ minutes on 2 cores)"
    cargo build --release -p voice-agent-api -p voice-agent-worker -p voice-agent-simulator \
        -p voice-agent-bench
fi
BIN_DIR="$(va_target_dir)/release"
for bin in voice-agent-api voice-agent-worker voice-agent-simulator voice; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin is missing (build without BENCH_SKIP_BUILD=1)"
done

va_bench_dirs voice

read -r T_PORT T_HTTP T_METRICS M_PORT S_PORT A_HTTP A_GRPC <<<"$(free_port 7)"
MONGO_URI="mongodb://127.0.0.1:$M_PORT/?directConnection=true"
API_URL="http://127.0.0.1:$A_HTTP"
SIM_URL="http://127.0.0.1:$S_PORT"

va_bench_services "$M_PORT" "$T_PORT" "$T_HTTP" "$T_METRICS"

va_start simulator "$OUT/simulator.log" env RUST_LOG=warn "$BIN_DIR/voice-agent-simulator" \
    --host 127.0.0.1 --port "$S_PORT" --account-sid "$ACCOUNT_SID" --auth-token "$AUTH_TOKEN" \
    --call-second-ms "$BENCH_CALL_SECOND_MS"
SIM_PID="$VA_LAST_PID"
wait_for_port 127.0.0.1 "$S_PORT" "Twilio simulator" 30 "$SIM_PID"

va_unset_args TEMPORAL_
APP_ENV=(
    "${VA_UNSET_ARGS[@]}"
    -u AGENTS_FILE
    "TEMPORAL_ADDRESS=http://127.0.0.1:$T_PORT"
    "TEMPORAL_NAMESPACE=default"
    "TEMPORAL_TASK_QUEUE=bench-voice"
    "MONGODB_URI=$MONGO_URI"
    "MONGODB_DATABASE=bench_voice"
    "TWILIO_BASE_URL=$SIM_URL"
    "TWILIO_ACCOUNT_SID=$ACCOUNT_SID"
    "TWILIO_AUTH_TOKEN=$AUTH_TOKEN"
    "TWILIO_FROM_NUMBER=$OURS"
    "PUBLIC_BASE_URL=$API_URL"
    "API_HTTP_ADDR=127.0.0.1:$A_HTTP"
    "API_GRPC_ADDR=127.0.0.1:$A_GRPC"
    # The simulator's own calls-per-second queue paces the dials, as before the per-sender limit.
    "SENDER_LIMIT_CALLS_PER_SECOND=0"
)
API_LOG="$OUT/api.log"
va_start api "$API_LOG" env "${APP_ENV[@]}" LOG_FORMAT=json RUST_LOG=warn,tower_http=debug \
    "$BIN_DIR/voice-agent-api"
API_PID="$VA_LAST_PID"
wait_for_port 127.0.0.1 "$A_HTTP" "API (HTTP)" 60 "$API_PID"

va_bench_worker

log "measuring: $BENCH_CALLS concurrent calls, $BENCH_LINES lines, think $BENCH_THINK_MS ms," \
    "at least $BENCH_TURNS gather turns"
"$BIN_DIR/voice" --api "$API_URL" --simulator "$SIM_URL" --ours "$OURS" \
    --calls "$BENCH_CALLS" --lines "$BENCH_LINES" --turns "$BENCH_TURNS" \
    --think-ms "$BENCH_THINK_MS" --warmup-calls "$BENCH_WARMUP_CALLS" \
    --silence-every "$BENCH_SILENCE_EVERY" --call-second-ms "$BENCH_CALL_SECOND_MS" \
    --api-log "$API_LOG" --temporal-metrics "http://127.0.0.1:$T_METRICS/metrics" \
    --watch "api=$API_PID" --watch "worker=$WORKER_PID" --watch "temporal=$TEMPORAL_PID" \
    --watch "mongo=$MONGO_PID" --watch "simulator=$SIM_PID" \
    --setting "profile=release" \
    --setting "mongo=$(basename "$MONGO_SERVER_BIN")" \
    --setting "cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
    --setting "cores=$(nproc)" \
    --setting "rustc=$(rustc --version)" \
    --setting "temporal_cli=$("$TEMPORAL_BIN" --version | head -n 1)" \
    --setting "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --out "$OUT/voice.json" "${EXTRA[@]}" | tee "$OUT/report.txt"
log "results: ${OUT#"$VA_ROOT"/}/voice.json, report.txt"
