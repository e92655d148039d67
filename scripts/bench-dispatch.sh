#!/usr/bin/env bash
# Dispatch benchmark: an SMS campaign to CONTACTS contacts through the simulator (no rate limit,
# no added latency): durable (api + worker + Temporal), then a loop doing the durable activity's
# MongoDB writes without Temporal (diagnostic), then the plain-loop baseline, side by side.
# Prints its figures; it is not a test and not part of scripts/test.sh. See docs/benchmarks.md.
#
#   scripts/bench-dispatch.sh [CONTACTS]        (default 100000)
#
# It builds the release binaries, then starts services of its own on free loopback ports and
# stops them, by PID, when it ends:
#   - a Temporal dev server, in memory (TEMPORAL_DB=sqlite: a SQLite file), with the same
#     dynamic-config poll caps as scripts/lib.sh;
#   - secantusd-rs (MongoDB wire protocol) with a throw-away store, restarted empty before each
#     loop run so every run starts from a fresh server and database;
#   - the Twilio simulator (release, RUST_LOG=warn, default callback delay 20 ms);
#   - voice-agent-api and voice-agent-worker (release).
# Results (JSON, per-second lines, logs) land in .data/bench/dispatch-<time>/.
#
# Environment (all optional):
#   TEMPORAL_DB=memory|sqlite   Temporal dev server persistence (default memory). The in-memory
#                               store failed (SQLite "out of memory (7)", then the server's
#                               memory grew by gigabytes a minute) at about 49,000 short voice
#                               calls: for voice runs past 40,000 use sqlite with
#                               BENCH_TEMPORAL_DB_DIR=/dev/shm (on the disk: 10-11 calls/s
#                               against 17; see docs/benchmarks.md)
#   BENCH_TEMPORAL_DB_DIR=      TEMPORAL_DB=sqlite: the folder for the file (default the run's
#                               work folder under .data/; /dev/shm keeps it off the disk)
#   BENCH_RUST_LOG=warn         log filter of api and worker
#   BENCH_CALLBACK_DELAY_MS=20  the simulator's delay before each status callback
#   BENCH_MONGO_CACHE=512M      secantusd-rs cache size
#   BENCH_SKIP_BUILD=1          use the release binaries as they are
#   BENCH_SKIP_BASELINE=1       durable run only
#   BENCH_DECOMPOSE=1           also run the loop with the durable activity's MongoDB writes but
#                               no Temporal (0: skip), to split the cost of durability
#   BENCH_POLL_S=1              seconds between progress polls (each one aggregates all items)
#   BENCH_DELIVER_WAIT_S=120    after the campaign completed, how long to wait for every item
#                               to be delivered (status callbacks applied)
#   BENCH_CHANNEL=sms           sms, or voice: a voice campaign (a child call workflow per contact,
#                               answered by a silent human: the agent's greeting, two reprompts
#                               and a goodbye, in simulated time), durable run only
#   BENCH_CALL_RATE=20          voice: calls per second (the campaign's rate, the simulator's CPS
#                               and SENDER_LIMIT_CALLS_PER_SECOND)
#   BENCH_MAX_IN_FLIGHT=50      voice: calls in flight at once
#   BENCH_CALLEE=               voice: every callee's simulator script (JSON, as PUT
#                               /admin/callees/*), e.g. '{"behaviour":"hangup_mid_call",
#                               "hangup_after_turns":0}'; default: a human who says nothing
#   BENCH_SENDER_LIMIT=5000     the sender number's limit (SENDER_LIMIT_SMS_PER_SECOND): above
#                               what the stack reaches, so it measures the slot reservations'
#                               cost without capping; 0 turns the per-sender limit off
#   BENCH_TIMEOUT_S=3600        give up on the campaign after this many seconds
#   BENCH_WORKER_ENV=           extra VAR=value settings for the worker only, space-separated
#                               (e.g. MALLOC_ARENA_MAX=2, for memory experiments)
#   MONGO_SERVER, STOP_TIMEOUT_S, CARGO_TARGET_DIR: as for scripts/test.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

CONTACTS="${1:-100000}"
if ! [[ "$CONTACTS" =~ ^[0-9]+$ ]] || ((CONTACTS < 1 || CONTACTS > 2000000)); then
    die "CONTACTS must be a number between 1 and 2000000 (got '$CONTACTS')"
fi
TEMPORAL_DB="${TEMPORAL_DB:-memory}"
case "$TEMPORAL_DB" in memory | sqlite) ;; *) die "TEMPORAL_DB must be memory or sqlite" ;; esac
BENCH_RUST_LOG="${BENCH_RUST_LOG:-warn}"
BENCH_CALLBACK_DELAY_MS="${BENCH_CALLBACK_DELAY_MS:-20}"
BENCH_MONGO_CACHE="${BENCH_MONGO_CACHE:-512M}"
BENCH_DECOMPOSE="${BENCH_DECOMPOSE:-1}"
BENCH_POLL_S="${BENCH_POLL_S:-1}"
BENCH_DELIVER_WAIT_S="${BENCH_DELIVER_WAIT_S:-120}"
[[ "$BENCH_DELIVER_WAIT_S" =~ ^[0-9]+$ ]] || die "BENCH_DELIVER_WAIT_S must be a whole number of seconds"
BENCH_CHANNEL="${BENCH_CHANNEL:-sms}"
BENCH_CALL_RATE="${BENCH_CALL_RATE:-20}"
BENCH_MAX_IN_FLIGHT="${BENCH_MAX_IN_FLIGHT:-50}"
case "$BENCH_CHANNEL" in sms | voice) ;; *) die "BENCH_CHANNEL must be sms or voice" ;; esac

ACCOUNT_SID="ACbe0c4be0c4be0c4be0c4be0c4be0c4be"
AUTH_TOKEN="bench-auth-token"
FROM="+15005550006"

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
for bin in voice-agent-api voice-agent-worker voice-agent-simulator dispatch baseline; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin is missing (build without BENCH_SKIP_BUILD=1)"
done

OUT="$VA_DATA_DIR/bench/dispatch-$(date +%Y%m%d-%H%M%S)"
WORK="$VA_DATA_DIR/bench-work-$$"
mkdir -p "$OUT" "$WORK"
va_remove_on_exit "$WORK"
log "results and logs: ${OUT#"$VA_ROOT"/}"

read -r T_PORT T_HTTP T_METRICS M_PORT S_PORT A_HTTP A_GRPC <<<"$(free_port 7)"
MONGO_URI="mongodb://127.0.0.1:$M_PORT/?directConnection=true"
API_URL="http://127.0.0.1:$A_HTTP"
SIM_URL="http://127.0.0.1:$S_PORT"

# start_mongo DIR: a SecantusDB server on M_PORT with an empty store in DIR; sets MONGO_PID.
start_mongo() {
    local dir="$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    local args=(--host 127.0.0.1 --port "$M_PORT" --storage-path "$dir" --cache-size "$BENCH_MONGO_CACHE")
    [[ "$(basename "$MONGO_SERVER_BIN")" == secantusd-rs ]] && args+=(--log-file-max 64MB)
    va_start mongo "$OUT/mongo-$(basename "$dir").log" "$MONGO_SERVER_BIN" "${args[@]}"
    MONGO_PID="$VA_LAST_PID"
    wait_for_port 127.0.0.1 "$M_PORT" "MongoDB" 60 "$MONGO_PID"
}

# MongoDB first: the dev server binds a few random loopback ports of its own.
start_mongo "$WORK/mongo-durable"

temporal_args=(server start-dev --headless --ip 127.0.0.1 --port "$T_PORT" --http-port "$T_HTTP"
    --metrics-port "$T_METRICS" --log-level warn "${VA_TEMPORAL_DYNAMIC_CONFIG[@]}")
if [[ "$TEMPORAL_DB" == sqlite ]]; then
    TEMPORAL_DB_DIR="${BENCH_TEMPORAL_DB_DIR:-$WORK}"
    [[ -d "$TEMPORAL_DB_DIR" ]] || die "BENCH_TEMPORAL_DB_DIR $TEMPORAL_DB_DIR is not a folder"
    temporal_args+=(--db-filename "$TEMPORAL_DB_DIR/temporal-bench-$$.db")
    # The database and whichever journal SQLite left (rollback, or WAL and its index).
    for suffix in "" -journal -wal -shm; do
        va_remove_on_exit "$TEMPORAL_DB_DIR/temporal-bench-$$.db$suffix"
    done
fi
va_start temporal "$OUT/temporal.log" "$TEMPORAL_BIN" "${temporal_args[@]}"
TEMPORAL_PID="$VA_LAST_PID"
wait_for_temporal "127.0.0.1:$T_PORT" default 120 "$TEMPORAL_PID"

va_start simulator "$OUT/simulator.log" env RUST_LOG=warn "$BIN_DIR/voice-agent-simulator" \
    --host 127.0.0.1 --port "$S_PORT" --account-sid "$ACCOUNT_SID" --auth-token "$AUTH_TOKEN" \
    --callback-delay-ms "$BENCH_CALLBACK_DELAY_MS" --default-sms-url "$API_URL/twilio/sms" \
    --calls-per-second "${BENCH_CALL_RATE%.*}"
SIM_PID="$VA_LAST_PID"
wait_for_port 127.0.0.1 "$S_PORT" "Twilio simulator" 30 "$SIM_PID"

va_unset_args TEMPORAL_
# The api's admin key for this run; dispatch sends it on its REST calls.
BENCH_API_KEY="$(va_new_api_key)"
# app_env DATABASE: the api's and worker's environment against DATABASE.
app_env() {
    APP_ENV=(
        "${VA_UNSET_ARGS[@]}"
        "TEMPORAL_ADDRESS=http://127.0.0.1:$T_PORT"
        "TEMPORAL_NAMESPACE=default"
        "TEMPORAL_TASK_QUEUE=bench-dispatch"
        "MONGODB_URI=$MONGO_URI"
        "MONGODB_DATABASE=$1"
        "TWILIO_BASE_URL=$SIM_URL"
        "TWILIO_ACCOUNT_SID=$ACCOUNT_SID"
        "TWILIO_AUTH_TOKEN=$AUTH_TOKEN"
        "TWILIO_FROM_NUMBER=$FROM"
        "PUBLIC_BASE_URL=$API_URL"
        "API_HTTP_ADDR=127.0.0.1:$A_HTTP"
        "API_GRPC_ADDR=127.0.0.1:$A_GRPC"
        "API_BOOTSTRAP_ADMIN_KEY=$BENCH_API_KEY"
        "RUST_LOG=$BENCH_RUST_LOG"
        "SENDER_LIMIT_SMS_PER_SECOND=${BENCH_SENDER_LIMIT:-5000}"
        "SENDER_LIMIT_CALLS_PER_SECOND=$BENCH_CALL_RATE"
    )
}

# start_api DATABASE: sets API_PID.
start_api() {
    app_env "$1"
    va_start api "$OUT/api-$1.log" env "${APP_ENV[@]}" "$BIN_DIR/voice-agent-api"
    API_PID="$VA_LAST_PID"
    wait_for_port 127.0.0.1 "$A_HTTP" "API (HTTP)" 60 "$API_PID"
}

SETTINGS=(
    --setting "temporal_db=$TEMPORAL_DB"
    --setting "callback_delay_ms=$BENCH_CALLBACK_DELAY_MS"
    --setting "poll_s=$BENCH_POLL_S"
    --setting "channel=$BENCH_CHANNEL"
    --setting "rust_log=$BENCH_RUST_LOG"
    --setting "mongo=$(basename "$MONGO_SERVER_BIN") cache $BENCH_MONGO_CACHE"
    --setting "cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
    --setting "cores=$(nproc)"
    --setting "memory=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    --setting "kernel=$(uname -r)"
    --setting "rustc=$(rustc --version)"
    --setting "temporal_cli=$("$TEMPORAL_BIN" --version | head -n 1)"
    --setting "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    --setting "worker_env=${BENCH_WORKER_ENV:-}"
    --setting "callee=${BENCH_CALLEE:-}"
)

# ---- durable: api + worker + Temporal --------------------------------------------------------
DB_DURABLE="bench_durable"
start_api "$DB_DURABLE"
app_env "$DB_DURABLE"
read -r -a WORKER_EXTRA_ENV <<<"${BENCH_WORKER_ENV:-}"
va_start worker "$OUT/worker.log" env "${APP_ENV[@]}" "${WORKER_EXTRA_ENV[@]}" "$BIN_DIR/voice-agent-worker"
WORKER_PID="$VA_LAST_PID"
# The worker listens on nothing: give it a moment to connect and poll, and check it is alive.
sleep 3
va_alive "$WORKER_PID" || {
    va_report_dead "$WORKER_PID"
    die "the worker exited at start"
}

log "durable run: $CONTACTS contacts"
VOICE_AGENT_API_KEY="$BENCH_API_KEY" "$BIN_DIR/dispatch" run --contacts "$CONTACTS" --api "$API_URL" --simulator "$SIM_URL" \
    --mongodb-uri "$MONGO_URI" --database "$DB_DURABLE" \
    --temporal "http://127.0.0.1:$T_PORT" --temporal-metrics "http://127.0.0.1:$T_METRICS/metrics" \
    --watch "worker=$WORKER_PID" --watch "api=$API_PID" --watch "temporal=$TEMPORAL_PID" \
    --watch "mongo=$MONGO_PID" --watch "simulator=$SIM_PID" \
    --channel "$BENCH_CHANNEL" --rate "$BENCH_CALL_RATE" --max-in-flight "$BENCH_MAX_IN_FLIGHT" \
    ${BENCH_CALLEE:+--callee "$BENCH_CALLEE"} --timeout-s "${BENCH_TIMEOUT_S:-3600}" \
    --poll-s "$BENCH_POLL_S" --deliver-wait-s "$BENCH_DELIVER_WAIT_S" "${SETTINGS[@]}" \
    --out "$OUT/durable.json" | tee "$OUT/durable.txt"

if [[ "${BENCH_SKIP_BASELINE:-0}" == 1 || "$BENCH_CHANNEL" == voice ]]; then
    log "durable run only: done"
    exit 0
fi

# ---- baseline: a plain loop, no Temporal -----------------------------------------------------
# Each loop run gets a fresh MongoDB server and database; the api stays in the picture only to
# apply the status callbacks, exactly as in the durable run. Temporal keeps running (idle): the
# api connects to it at start.
va_stop "$WORKER_PID"

# run_loop WRITES NAME: the baseline binary with --writes WRITES, results in NAME.json.
run_loop() {
    local writes="$1" name="$2"
    va_stop "$API_PID"
    va_stop "$MONGO_PID"
    start_mongo "$WORK/mongo-$name"
    start_api "bench_$name"
    log "$name run ($writes writes): $CONTACTS contacts"
    "$BIN_DIR/baseline" --contacts "$CONTACTS" --writes "$writes" --simulator "$SIM_URL" \
        --mongodb-uri "$MONGO_URI" --database "bench_$name" --public-base-url "$API_URL" \
        --account-sid "$ACCOUNT_SID" --auth-token "$AUTH_TOKEN" --from "$FROM" \
        --watch "api=$API_PID" --watch "mongo=$MONGO_PID" --watch "simulator=$SIM_PID" \
        --poll-s "$BENCH_POLL_S" "${SETTINGS[@]}" --out "$OUT/$name.json" | tee "$OUT/$name.txt"
}

report_args=(--durable "$OUT/durable.json" --baseline "$OUT/baseline.json")
if [[ "$BENCH_DECOMPOSE" == 1 ]]; then
    # Diagnostic: the loop with the durable activity's MongoDB writes, still without Temporal.
    run_loop durable loop_durable_writes
    report_args+=(--loop-durable-writes "$OUT/loop_durable_writes.json")
fi
run_loop plain baseline

"$BIN_DIR/dispatch" report "${report_args[@]}" | tee "$OUT/report.txt"
log "results: ${OUT#"$VA_ROOT"/}/*.json, report.txt"
