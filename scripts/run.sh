#!/usr/bin/env bash
# Run the whole Voice Agent stack locally, in the foreground, until Ctrl-C:
#   Temporal dev server (SQLite file, Web UI) + MongoDB-wire server (SecantusDB)
#   + Twilio simulator + voice-agent-api + voice-agent-worker.
# All servers listen on 127.0.0.1 only. Data and logs live under .data/ (git-ignored);
# a second run reuses the installed tools and the data.
#
# Environment (all optional):
#   PROFILE=debug|release          cargo profile to build and run (default debug)
#   TEMPORAL_PORT=7233 TEMPORAL_UI_PORT=8233 MONGO_PORT=27017 SIMULATOR_PORT=8090
#   API_HTTP_PORT=8080 API_GRPC_PORT=50051
#   TEMPORAL_NAMESPACE=default     MONGODB_DATABASE=voice_agent
#   MONGODB_URI=...                use this MongoDB; start no local server
#   TWILIO_ACCOUNT_SID=AC...       use real Twilio (with TWILIO_AUTH_TOKEN); start no simulator
#   PUBLIC_BASE_URL=...            the base URL Twilio calls back (default http://127.0.0.1:$API_HTTP_PORT)
#   AGENTS_FILE=...                agent profiles and their numbers (default agent/agents.example.toml;
#                                  /dev/null for no agent); AGENT_MODEL_* pass through (docs/agents.md)
#   RUST_LOG=info                  log filter of the project's binaries
#   (access control: a local admin key and user are created on first run and kept in
#    .data/local-api-key and .data/local-admin-password; vactl finds the key there)
#   MONGO_SERVER=auto|rs|py        which SecantusDB server (see scripts/lib.sh)
#   STOP_TIMEOUT_S=15              grace period between SIGTERM and SIGKILL on shutdown
#   CARGO_TARGET_DIR               respected
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"
MONGO_PORT="${MONGO_PORT:-27017}"
SIMULATOR_PORT="${SIMULATOR_PORT:-8090}"
API_HTTP_PORT="${API_HTTP_PORT:-8080}"
API_GRPC_PORT="${API_GRPC_PORT:-50051}"
TEMPORAL_NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
MONGODB_DATABASE="${MONGODB_DATABASE:-voice_agent}"
PROFILE="${PROFILE:-debug}"

case "$PROFILE" in
debug | dev) PROFILE_DIR=debug CARGO_PROFILE_ARGS=() ;;
release) PROFILE_DIR=release CARGO_PROFILE_ARGS=(--release) ;;
*) PROFILE_DIR="$PROFILE" CARGO_PROFILE_ARGS=(--profile "$PROFILE") ;;
esac
BIN_DIR="$(va_target_dir)/$PROFILE_DIR"

EXTERNAL_MONGO=0
[[ -n "${MONGODB_URI:-}" ]] && EXTERNAL_MONGO=1
REAL_TWILIO=0
[[ -n "${TWILIO_ACCOUNT_SID:-}" ]] && REAL_TWILIO=1

# Fail fast on taken ports, before any install or build.
require_port_free "$TEMPORAL_PORT" "Temporal gRPC" TEMPORAL_PORT
require_port_free "$TEMPORAL_UI_PORT" "Temporal Web UI" TEMPORAL_UI_PORT
((EXTERNAL_MONGO)) || require_port_free "$MONGO_PORT" "MongoDB (SecantusDB)" MONGO_PORT
((REAL_TWILIO)) || require_port_free "$SIMULATOR_PORT" "the Twilio simulator" SIMULATOR_PORT
require_port_free "$API_HTTP_PORT" "the API (HTTP)" API_HTTP_PORT
require_port_free "$API_GRPC_PORT" "the API (gRPC)" API_GRPC_PORT
dupes="$(printf '%s\n' "$TEMPORAL_PORT" "$TEMPORAL_UI_PORT" "$API_HTTP_PORT" "$API_GRPC_PORT" \
    "$( ((EXTERNAL_MONGO)) || echo "$MONGO_PORT")" "$( ((REAL_TWILIO)) || echo "$SIMULATOR_PORT")" |
    sed '/^$/d' | sort | uniq -d)"
[[ -z "$dupes" ]] || die "two services are configured on the same port: $dupes"

if ((REAL_TWILIO)); then
    [[ -n "${TWILIO_AUTH_TOKEN:-}" ]] ||
        die "TWILIO_ACCOUNT_SID is set (real Twilio) but TWILIO_AUTH_TOKEN is not"
    [[ -n "${PUBLIC_BASE_URL:-}" ]] ||
        warn "real Twilio cannot reach http://127.0.0.1:$API_HTTP_PORT for webhooks: set PUBLIC_BASE_URL to a public URL (tunnel) that forwards there"
fi

# ---- tools and build ------------------------------------------------------------------------
ensure_python_venv
((EXTERNAL_MONGO)) || ensure_mongo_server
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (install Rust with rustup)"

ensure_web_app

log "cargo build --workspace --bins ${CARGO_PROFILE_ARGS[*]}"
cargo build --workspace --bins "${CARGO_PROFILE_ARGS[@]}"
for bin in voice-agent-api voice-agent-worker voice-agent-simulator; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin was not built (is its crate a [[bin]] yet?)"
done

mkdir -p "$VA_DATA_DIR/temporal" "$VA_LOG_DIR"

# ---- Temporal -------------------------------------------------------------------------------
temporal_args=(server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT"
    --db-filename "$VA_DATA_DIR/temporal/temporal.db" --log-level warn "${VA_TEMPORAL_DYNAMIC_CONFIG[@]}")
[[ "$TEMPORAL_NAMESPACE" == default ]] || temporal_args+=(--namespace "$TEMPORAL_NAMESPACE")
va_start temporal "$VA_LOG_DIR/temporal.log" "$TEMPORAL_BIN" "${temporal_args[@]}"
wait_for_temporal "127.0.0.1:$TEMPORAL_PORT" "$TEMPORAL_NAMESPACE" 120 "$VA_LAST_PID"

# ---- MongoDB --------------------------------------------------------------------------------
if ((EXTERNAL_MONGO)); then
    log "MONGODB_URI is set: using that MongoDB, starting none"
    APP_MONGODB_URI="$MONGODB_URI"
else
    mkdir -p "$VA_DATA_DIR/mongo"
    va_start mongo "$VA_LOG_DIR/mongo.log" "$MONGO_SERVER_BIN" --host 127.0.0.1 --port "$MONGO_PORT" \
        --storage-path "$VA_DATA_DIR/mongo" --cache-size 256M
    wait_for_port 127.0.0.1 "$MONGO_PORT" "MongoDB ($(basename "$MONGO_SERVER_BIN"))" 60 "$VA_LAST_PID"
    APP_MONGODB_URI="mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true"
fi

# ---- access control ---------------------------------------------------------------------------
# A local admin API key (vactl reads .data/local-api-key when VOICE_AGENT_API_KEY is unset) and a
# local admin user for the web app, made once and reused.
mkdir -p "$VA_DATA_DIR"
LOCAL_KEY_FILE="$VA_DATA_DIR/local-api-key"
LOCAL_PASSWORD_FILE="$VA_DATA_DIR/local-admin-password"
LOCAL_ADMIN_EMAIL="admin@voice-agent.local"
(
    umask 077
    [[ -s "$LOCAL_KEY_FILE" ]] || va_new_api_key >"$LOCAL_KEY_FILE"
    [[ -s "$LOCAL_PASSWORD_FILE" ]] ||
        head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$LOCAL_PASSWORD_FILE"
)

# ---- Twilio simulator -----------------------------------------------------------------------
PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:$API_HTTP_PORT}"
app_env=(
    "TEMPORAL_ADDRESS=http://127.0.0.1:$TEMPORAL_PORT"
    "TEMPORAL_NAMESPACE=$TEMPORAL_NAMESPACE"
    "MONGODB_URI=$APP_MONGODB_URI"
    "MONGODB_DATABASE=$MONGODB_DATABASE"
    "API_HTTP_ADDR=127.0.0.1:$API_HTTP_PORT"
    "API_GRPC_ADDR=127.0.0.1:$API_GRPC_PORT"
    "PUBLIC_BASE_URL=$PUBLIC_BASE_URL"
    "AGENTS_FILE=${AGENTS_FILE:-$VA_ROOT/agent/agents.example.toml}"
    "WEB_DIR=${WEB_DIR:-$WEB_DIST}"
    "RUST_LOG=${RUST_LOG:-info}"
)
# Only the api reads these.
auth_env=(
    "TEMPORAL_UI_URL=${TEMPORAL_UI_URL:-http://127.0.0.1:$TEMPORAL_UI_PORT}"
    "API_BOOTSTRAP_ADMIN_KEY=$(cat "$LOCAL_KEY_FILE")"
    "API_BOOTSTRAP_ADMIN_EMAIL=$LOCAL_ADMIN_EMAIL"
    "API_BOOTSTRAP_ADMIN_PASSWORD=$(cat "$LOCAL_PASSWORD_FILE")"
)
if ((REAL_TWILIO)); then
    log "TWILIO_ACCOUNT_SID is set: using real Twilio, starting no simulator"
else
    SIM_ACCOUNT_SID="ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    SIM_AUTH_TOKEN="simulator-auth-token"
    va_start simulator "$VA_LOG_DIR/simulator.log" env \
        "SIMULATOR_ACCOUNT_SID=$SIM_ACCOUNT_SID" "SIMULATOR_AUTH_TOKEN=$SIM_AUTH_TOKEN" \
        "RUST_LOG=${RUST_LOG:-info}" \
        "$BIN_DIR/voice-agent-simulator" --host 127.0.0.1 --port "$SIMULATOR_PORT" \
        --default-sms-url "http://127.0.0.1:$API_HTTP_PORT/twilio/sms" \
        --default-voice-url "http://127.0.0.1:$API_HTTP_PORT/twilio/voice" \
        --default-voice-status-callback "http://127.0.0.1:$API_HTTP_PORT/twilio/voice/status"
    wait_for_port 127.0.0.1 "$SIMULATOR_PORT" "Twilio simulator" 30 "$VA_LAST_PID"
    app_env+=(
        "TWILIO_BASE_URL=http://127.0.0.1:$SIMULATOR_PORT"
        "TWILIO_ACCOUNT_SID=$SIM_ACCOUNT_SID"
        "TWILIO_AUTH_TOKEN=$SIM_AUTH_TOKEN"
        # A Twilio magic test number, so that `vactl send-sms` needs no --from.
        "TWILIO_FROM_NUMBER=${TWILIO_FROM_NUMBER:-+15005550006}"
        # The simulator is no long code: a demo campaign at rate 5 sends at 5 (real Twilio keeps
        # the worker's default of 1 per number unless the shell sets it).
        "SENDER_LIMIT_SMS_PER_SECOND=${SENDER_LIMIT_SMS_PER_SECOND:-10}"
    )
fi

# ---- API and worker -------------------------------------------------------------------------
# The Temporal client settings of the user's shell (TEMPORAL_API_KEY, TLS, ...) are for another
# server: the local stack always talks plain gRPC to its own dev server.
va_unset_args TEMPORAL_
va_start api "$VA_LOG_DIR/api.log" env "${VA_UNSET_ARGS[@]}" "${app_env[@]}" "${auth_env[@]}" \
    "$BIN_DIR/voice-agent-api"
api_pid="$VA_LAST_PID"
va_start worker "$VA_LOG_DIR/worker.log" env "${VA_UNSET_ARGS[@]}" "${app_env[@]}" "$BIN_DIR/voice-agent-worker"
worker_pid="$VA_LAST_PID"
wait_for_port 127.0.0.1 "$API_HTTP_PORT" "API (HTTP)" 60 "$api_pid"
wait_for_port 127.0.0.1 "$API_GRPC_PORT" "API (gRPC)" 60 "$api_pid"
# The worker listens on nothing: give it a moment to connect, and check it is still there.
sleep 2
if ! va_alive "$worker_pid"; then
    va_report_dead "$worker_pid"
    die "the worker exited at start"
fi

# ---- summary --------------------------------------------------------------------------------
vactl_api=""
[[ "$API_GRPC_PORT" == 50051 ]] || vactl_api=" --api http://127.0.0.1:$API_GRPC_PORT"
mask_uri() { sed -E 's#//[^/@]*@#//***@#' <<<"$1"; }
agent_hint=""
if ((REAL_TWILIO)); then
    twilio_line="real Twilio (account ${TWILIO_ACCOUNT_SID:0:6}…), webhooks via $PUBLIC_BASE_URL"
else
    twilio_line="http://127.0.0.1:$SIMULATOR_PORT  (account $SIM_ACCOUNT_SID)"
fi
if [[ -n "${AGENTS_FILE:-}" ]]; then
    agent_hint="
    agents file: $AGENTS_FILE (docs/agents.md)"
elif ((!REAL_TWILIO)); then
    agent_hint="
    text the example agent (agent/agents.example.toml) and read its reply and the conversation:
    curl -s -X POST http://127.0.0.1:$SIMULATOR_PORT/admin/inbound -H 'content-type: application/json' \\
      -d '{\"from\": \"+14155550123\", \"to\": \"+15005550006\", \"body\": \"Hi!\"}'
    curl -s 'http://127.0.0.1:$SIMULATOR_PORT/admin/ledger?to=%2B14155550123'   # the reply
    curl -s -H \"Authorization: Bearer \$VOICE_AGENT_API_KEY\" http://127.0.0.1:$API_HTTP_PORT/api/conversations/conversation-15005550006-14155550123"
fi
cat <<EOF

  Voice Agent is running (profile $PROFILE_DIR)
    Web app            http://127.0.0.1:$API_HTTP_PORT   (API reference: /api/docs)
    Temporal Web UI    http://127.0.0.1:$TEMPORAL_UI_PORT
    Temporal gRPC      127.0.0.1:$TEMPORAL_PORT  (namespace $TEMPORAL_NAMESPACE)
    API gRPC           127.0.0.1:$API_GRPC_PORT
    API HTTP           http://127.0.0.1:$API_HTTP_PORT  (/healthz, /metrics, Twilio webhooks under /twilio/)
    Sign in            $LOCAL_ADMIN_EMAIL, password in ${LOCAL_PASSWORD_FILE#"$VA_ROOT"/}
    Admin API key      in ${LOCAL_KEY_FILE#"$VA_ROOT"/} (vactl reads it; for curl:
                       export VOICE_AGENT_API_KEY=\$(cat ${LOCAL_KEY_FILE#"$VA_ROOT"/}))
    Twilio             $twilio_line
    MongoDB            $(mask_uri "$APP_MONGODB_URI")  (database $MONGODB_DATABASE)
    Logs               ${VA_LOG_DIR#"$VA_ROOT"/}/{temporal,mongo,simulator,api,worker}.log

  Quick tour, in another terminal:
    ${BIN_DIR#"$VA_ROOT"/}/vactl${vactl_api} send-sms --to +14155550100 --body hello --wait
    ${BIN_DIR#"$VA_ROOT"/}/vactl${vactl_api} list-messages --phone +14155550100
    curl http://127.0.0.1:$API_HTTP_PORT/healthz
    then open the Temporal Web UI to see the workflow.$agent_hint
    call the agent (a simulated caller says two lines) and read the transcript:
    curl -s -X POST http://127.0.0.1:$SIMULATOR_PORT/admin/calls/inbound -H 'content-type: application/json' \\
      -d '{"from": "+14155550124", "to": "+15005550006", "lines": ["Hello", "bye"]}'
    curl -s -H "Authorization: Bearer \$VOICE_AGENT_API_KEY" http://127.0.0.1:$API_HTTP_PORT/api/calls/call-<call_sid from the answer>

  Press Ctrl-C to stop everything.

EOF

# ---- wait until Ctrl-C or until a service dies ------------------------------------------------
while true; do
    if dead="$(va_first_dead)"; then
        name="${_VA_PID_NAME[$dead]}"
        va_report_dead "$dead"
        die "$name stopped unexpectedly; stopping the rest"
    fi
    sleep 1
done
