#!/usr/bin/env bash
# Inbound burst: signed inbound SMS webhooks at a fixed offered rate, each from a new number
# (a new conversation), against the release api with no agent on the number. Prints webhook
# latency p50 / p90 / p99, errors, the time until every accepted message is in its
# conversation workflow (the drain), and the Temporal server's own workflow-start rate measured
# right after on the same server. It is not a test and not part of scripts/test.sh. See
# docs/benchmarks.md ("Inbound bursts").
#
#   scripts/bench-inbound.sh [RATE [SECONDS]]      defaults: 200 60
#
# It builds the release binaries, then starts services of its own on free loopback ports and
# stops them, by PID, when it ends: a Temporal dev server in memory (the poll caps of
# scripts/lib.sh), secantusd-rs with a throw-away store, voice-agent-api and voice-agent-worker
# (release, RUST_LOG=warn, no agents file). No simulator: the benchmark signs the webhooks.
# Logs land in .data/bench/inbound-<time>/.
#
# Environment (all optional):
#   BENCH_SKIP_BUILD=1        use the release binaries as they are
#   BENCH_START_PROBE=2000    workflows started to measure Temporal's own start rate (0: skip)
#   MONGO_SERVER, STOP_TIMEOUT_S, CARGO_TARGET_DIR: as for scripts/test.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

RATE="${1:-200}"
SECONDS_OFFERED="${2:-60}"
[[ "$RATE" =~ ^[0-9]+$ && "$SECONDS_OFFERED" =~ ^[0-9]+$ ]] || die "usage: $0 [RATE [SECONDS]]"
BENCH_START_PROBE="${BENCH_START_PROBE:-2000}"
[[ "$BENCH_START_PROBE" =~ ^[0-9]+$ ]] || die "BENCH_START_PROBE must be a whole number"

ACCOUNT_SID="ACbe0c4be0c4be0c4be0c4be0c4be0c4be"
AUTH_TOKEN="bench-auth-token"
OURS="+15005550006"

ensure_python_venv
ensure_mongo_server
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release (the first time takes 10+ minutes on 2 cores)"
    cargo build --release -p voice-agent-api -p voice-agent-worker -p voice-agent-bench
fi
BIN_DIR="$(va_target_dir)/release"
for bin in voice-agent-api voice-agent-worker inbound; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin is missing (build without BENCH_SKIP_BUILD=1)"
done

va_bench_dirs inbound

read -r T_PORT T_HTTP T_METRICS M_PORT A_HTTP A_GRPC <<<"$(free_port 6)"
MONGO_URI="mongodb://127.0.0.1:$M_PORT/?directConnection=true"
API_URL="http://127.0.0.1:$A_HTTP"

va_bench_services "$M_PORT" "$T_PORT" "$T_HTTP" "$T_METRICS"

va_unset_args TEMPORAL_
APP_ENV=(
    "${VA_UNSET_ARGS[@]}"
    -u AGENTS_FILE
    "TEMPORAL_ADDRESS=http://127.0.0.1:$T_PORT"
    "TEMPORAL_NAMESPACE=default"
    "TEMPORAL_TASK_QUEUE=bench-inbound"
    "MONGODB_URI=$MONGO_URI"
    "MONGODB_DATABASE=bench_inbound"
    "TWILIO_BASE_URL=http://127.0.0.1:9"
    "TWILIO_ACCOUNT_SID=$ACCOUNT_SID"
    "TWILIO_AUTH_TOKEN=$AUTH_TOKEN"
    "TWILIO_FROM_NUMBER=$OURS"
    "PUBLIC_BASE_URL=$API_URL"
    "API_HTTP_ADDR=127.0.0.1:$A_HTTP"
    "API_GRPC_ADDR=127.0.0.1:$A_GRPC"
    # Replies of a burst are not paced by the number's limit: the burst's figures stay comparable.
    "SENDER_LIMIT_SMS_PER_SECOND=0"
)
va_bench_api "$A_HTTP"
va_bench_worker

log "offering $RATE webhooks/s for $SECONDS_OFFERED s"
"$BIN_DIR/inbound" --api "$API_URL" --auth-token "$AUTH_TOKEN" --account-sid "$ACCOUNT_SID" \
    --ours "$OURS" --rate "$RATE" --seconds "$SECONDS_OFFERED" --mongo-uri "$MONGO_URI" \
    --database bench_inbound --temporal "127.0.0.1:$T_PORT" --start-probe "$BENCH_START_PROBE" |
    tee "$OUT/report.txt"
log "report: ${OUT#"$VA_ROOT"/}/report.txt"
