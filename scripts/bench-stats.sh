#!/usr/bin/env bash
# Dashboard figures at scale: 1,000,000 messages and 100,000 call logs (by default) spread over
# 30 days in a fresh secantusd-rs, written as data from before the daily counters; then the
# counters' rebuild (what the api does at start) and the dashboard's read (`GET /api/stats` on a
# cache miss) for 1, 7 and 30 days, timed: wall time and the server's CPU, checked against a
# count of the window. Prints its figures; it is not a test and not part of scripts/test.sh.
# See docs/benchmarks.md ("Dashboard figures").
#
#   scripts/bench-stats.sh [MESSAGES [CALLS]]      defaults: 1000000 100000
#
# Environment (all optional):
#   BENCH_SKIP_BUILD=1        use the release binary as it is
#   BENCH_MONGO_CACHE=512M    secantusd-rs cache size
#   MONGO_SERVER, STOP_TIMEOUT_S, CARGO_TARGET_DIR: as for scripts/test.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

MESSAGES="${1:-1000000}"
CALLS="${2:-100000}"
[[ "$MESSAGES" =~ ^[0-9]+$ && "$CALLS" =~ ^[0-9]+$ ]] || die "usage: $0 [MESSAGES [CALLS]]"
((MESSAGES <= 10000000 && CALLS <= 10000000)) || die "at most 10000000 of each"
BENCH_MONGO_CACHE="${BENCH_MONGO_CACHE:-512M}"

ensure_mongo_server
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release (the first time takes 10+ minutes on 2 cores)"
    # The other benchmarks' package set: the same features, so their build is reused.
    cargo build --release -p voice-agent-api -p voice-agent-worker -p voice-agent-simulator \
        -p voice-agent-bench
fi
BIN="$(va_target_dir)/release/stats"
[[ -x "$BIN" ]] || die "$BIN is missing (build without BENCH_SKIP_BUILD=1)"

OUT="$VA_DATA_DIR/bench/stats-$(date +%Y%m%d-%H%M%S)"
WORK="$VA_DATA_DIR/bench-work-$$"
mkdir -p "$OUT" "$WORK/mongo"
va_remove_on_exit "$WORK"

read -r M_PORT <<<"$(free_port 1)"
mongo_args=(--host 127.0.0.1 --port "$M_PORT" --storage-path "$WORK/mongo" --cache-size "$BENCH_MONGO_CACHE")
[[ "$(basename "$MONGO_SERVER_BIN")" == secantusd-rs ]] && mongo_args+=(--log-file-max 64MB)
va_start mongo "$OUT/mongo.log" "$MONGO_SERVER_BIN" "${mongo_args[@]}"
MONGO_PID="$VA_LAST_PID"
wait_for_port 127.0.0.1 "$M_PORT" "MongoDB" 60 "$MONGO_PID"

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" --mongodb-uri "mongodb://127.0.0.1:$M_PORT/?directConnection=true" \
    --messages "$MESSAGES" --calls "$CALLS" --mongo-pid "$MONGO_PID" | tee "$OUT/stats.txt"
log "load average at the end $(cut -d' ' -f1-3 /proc/loadavg); results: ${OUT#"$VA_ROOT"/}/stats.txt"
