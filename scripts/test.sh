#!/usr/bin/env bash
# The project's test gate (called by .ci/run):
#   format check, clippy (-D warnings), build, then the tests against real services that this
#   script starts for itself: an in-memory Temporal dev server and a SecantusDB server with a
#   throw-away store, on free ports. It never touches a running scripts/run.sh stack (other
#   ports, other data) and stops everything it started, by PID, when it exits.
#
# Environment (all optional):
#   CARGO_TARGET_DIR       respected
#   MONGO_SERVER=auto|rs|py  which SecantusDB server (see scripts/lib.sh)
#   STOP_TIMEOUT_S=15      grace period between SIGTERM and SIGKILL
#   FUZZ_SECONDS=20        seconds per fuzz target (0 skips the fuzz step)
# Exported to the tests:
#   VA_TEST_TEMPORAL_ADDRESS  http://127.0.0.1:<port> (namespace "default")
#   VA_TEST_MONGODB_URI       mongodb://127.0.0.1:<port>/?directConnection=true
#   VA_BIN_DIR                the debug binaries (voice-agent-api, -worker, -simulator, vactl)
#   SIMULATOR_BIN             $VA_BIN_DIR/voice-agent-simulator
#   VA_TEMPORAL_BIN           the temporal CLI (for tests that start their own dev server)
#   CHROMIUM_BIN              Debian's chromium, for the web app's browser tests
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"

STARTED_AT=$SECONDS
STEP="setup"
STEP_RESULTS=()
CARGO_TEST_TOTALS=""
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0

# Printed by the EXIT trap after the services are stopped: the last line of every run.
va_on_exit_hook() {
    local rc="$1" took
    took="$(va_elapsed $((SECONDS - STARTED_AT)))"
    if [[ ${#STEP_RESULTS[@]} -gt 0 ]]; then
        log "steps: ${STEP_RESULTS[*]}"
    fi
    if [[ "$rc" -eq 0 ]]; then
        echo "test.sh: PASSED in $took${CARGO_TEST_TOTALS:+ (cargo tests: $CARGO_TEST_TOTALS)}"
        echo "totals: $TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
    else
        echo "test.sh: FAILED at step '$STEP' (exit status $rc) after $took${CARGO_TEST_TOTALS:+ (cargo tests so far: $CARGO_TEST_TOTALS)}"
    fi
}
va_install_traps

# step NAME COMMAND [ARGS...]: run one step; set -e ends the script on failure, and the EXIT
# trap names the step.
step() {
    STEP="$1"
    shift
    local t0=$SECONDS
    log "==== $STEP: $*"
    "$@"
    STEP_RESULTS+=("$STEP:ok($((SECONDS - t0))s)")
}

# cargo_test_counted ARGS...: cargo test, its output also kept to add up the result lines.
cargo_test_counted() {
    local cargo_log="$VA_LOG_DIR/test-cargo-$STEP.log"
    local rc=0
    cargo test "$@" 2>&1 | tee "$cargo_log" || rc=$?
    # "test result: ok. 12 passed; 0 failed; 1 ignored; ..." per test binary
    local p f i
    read -r p f i < <(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { print p + 0, f + 0, i + 0 }' "$cargo_log")
    TOTAL_PASSED=$((TOTAL_PASSED + p))
    TOTAL_FAILED=$((TOTAL_FAILED + f))
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + i))
    CARGO_TEST_TOTALS="${CARGO_TEST_TOTALS:+$CARGO_TEST_TOTALS; }$STEP: $p passed, $f failed, $i ignored"
    return "$rc"
}

mkdir -p "$VA_LOG_DIR"
TARGET_DIR="$(va_target_dir)"
export VA_BIN_DIR="$TARGET_DIR/debug"
export SIMULATOR_BIN="$VA_BIN_DIR/voice-agent-simulator"

# ---- tools ------------------------------------------------------------------------------------
step tools ensure_python_venv
step mongo-server ensure_mongo_server
step cargo-tools va_ensure_cargo_tools
step web-tools ensure_web_app
step chromium ensure_chromium
export VA_TEMPORAL_BIN="$TEMPORAL_BIN"

# ---- static checks and build ------------------------------------------------------------------
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step build cargo build --workspace --bins --tests

# The web app: its client is generated from the api's document (a Rust test keeps
# web/openapi.json equal to what the api serves), its types check, its unit tests pass; the
# browser tests run in the e2e step against the build ensure_web_app made.
web_checks() {
    (cd web && npm run --silent check-gen && npm run --silent typecheck && npx vitest run)
}
step web web_checks

# The container files, checked without a Docker engine (docker/README.md says what this covers).
docker_checks() {
    if python3 -c 'import yaml, jsonschema' 2>/dev/null; then
        python3 docker/check.py
    else
        warn "docker/check.py skipped: python3 has no PyYAML or jsonschema (apt install python3-yaml python3-jsonschema)"
    fi
}
step docker docker_checks

# ---- services of our own: free ports, throw-away data ------------------------------------------
start_services() {
    local work="$VA_DATA_DIR/test-$$"
    rm -rf "$work"
    mkdir -p "$work/mongo"
    va_remove_on_exit "$work"

    local t_port t_http t_metrics m_port
    read -r t_port t_http t_metrics m_port <<<"$(free_port 4)"
    # MongoDB first, listening before Temporal starts: the dev server also binds a few random
    # loopback ports of its own, which must not take the one picked for MongoDB.
    local mongo_args=(--host 127.0.0.1 --port "$m_port" --storage-path "$work/mongo" --cache-size 256M)
    # A WiredTiger log file is allocated in full (128 MB by default); tests need far less.
    [[ "$(basename "$MONGO_SERVER_BIN")" == secantusd-rs ]] && mongo_args+=(--log-file-max 16MB)
    va_start test-mongo "$VA_LOG_DIR/test-mongo.log" "$MONGO_SERVER_BIN" "${mongo_args[@]}"
    wait_for_port 127.0.0.1 "$m_port" "MongoDB ($(basename "$MONGO_SERVER_BIN"))" 60 "$VA_LAST_PID"

    # In memory (no --db-filename), no Web UI.
    va_start test-temporal "$VA_LOG_DIR/test-temporal.log" "$TEMPORAL_BIN" server start-dev \
        --headless --ip 127.0.0.1 --port "$t_port" --http-port "$t_http" --metrics-port "$t_metrics" \
        --log-level warn "${VA_TEMPORAL_DYNAMIC_CONFIG[@]}"
    wait_for_temporal "127.0.0.1:$t_port" default 120 "$VA_LAST_PID"

    export VA_TEST_TEMPORAL_ADDRESS="http://127.0.0.1:$t_port"
    export VA_TEST_MONGODB_URI="mongodb://127.0.0.1:$m_port/?directConnection=true"
    log "VA_TEST_TEMPORAL_ADDRESS=$VA_TEST_TEMPORAL_ADDRESS"
    log "VA_TEST_MONGODB_URI=$VA_TEST_MONGODB_URI"
}
step services start_services

# ---- tests ------------------------------------------------------------------------------------
step cargo-test cargo_test_counted --workspace

# Store tests against MongoDB: also a `test = false` target.
step store cargo_test_counted -p voice-agent-store --test mongo

# A worker gives back the memory of finished workflow runs: an in-process SDK worker against
# Temporal, also a `test = false` target (vendor/README.md says why it exists).
step workflows-memory cargo_test_counted -p voice-agent-workflows --test memory

# End-to-end tests are a `test = false` target (plain cargo test stays hermetic); run them by name.
step e2e cargo_test_counted -p voice-agent-e2e --test e2e -- --test-threads=2

# The official twilio Python library against the simulator (it starts the SIMULATOR_BIN itself).
# No proxy for loopback, and no TWILIO_EDGE/TWILIO_REGION, which would make the library rewrite
# the simulator's host name.
python_client_test() {
    local py_log="$VA_LOG_DIR/test-python-client.log" rc=0
    env -u TWILIO_EDGE -u TWILIO_REGION NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
        "$VA_VENV/bin/python" simulator/tests/python/test_official_client.py 2>&1 | tee "$py_log" || rc=$?
    # unittest closes with "Ran N tests in ...", then "OK", "OK (skipped=K)" or "FAILED (...)".
    if [[ $rc -eq 0 ]]; then
        local ran skipped
        ran="$(sed -nE 's/^Ran ([0-9]+) tests? in .*/\1/p' "$py_log" | tail -n 1)"
        skipped="$(sed -nE 's/^OK \(.*skipped=([0-9]+).*\)$/\1/p' "$py_log" | tail -n 1)"
        TOTAL_PASSED=$((TOTAL_PASSED + ${ran:-0} - ${skipped:-0}))
        TOTAL_SKIPPED=$((TOTAL_SKIPPED + ${skipped:-0}))
    fi
    return "$rc"
}
step python-client python_client_test

# Fuzz targets (fuzz/, nightly + cargo-fuzz): built, then each run briefly from its seeds.
# FUZZ_SECONDS=0 skips the step (a machine without the nightly toolchain).
if [[ "${FUZZ_SECONDS:-20}" -gt 0 ]]; then
    step fuzz scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi

STEP="done"
