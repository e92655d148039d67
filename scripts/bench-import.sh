#!/usr/bin/env bash
# Contact-import benchmark: prints figures side by side, asserts nothing (not part of test.sh).
#
#   1. builds the benchmark binary (contacts/benches/import.rs) in release;
#   2. generates a workbook of ROWS contacts under .data/bench/ (mixed phone formats, about 5%
#      invalid, about 3% repeated numbers; deterministic, so it is reused when present);
#   3. starts its own MongoDB-wire server on a free port, with a throw-away store, the same
#      way scripts/test.sh does;
#   4. runs, one after the other on the same file:
#        - ours, end to end: read, parse, validate, merge, write into MongoDB (a new list);
#        - ours, parse only: the same without the database (what the peer does);
#        - the Python peer (contacts/bench/peer_import.py): pandas.read_excel + openpyxl +
#          phonenumbers, read, normalise and de-duplicate, no database;
#      each under /usr/bin/time for wall time and peak memory;
#   5. prints a table and the ratios, then stops the server it started.
#
# Environment (all optional):
#   ROWS=100000       rows of the generated workbook
#   REGION=US         default region for numbers without +
#   MONGO_SERVER=auto|rs|py  which SecantusDB server (see scripts/lib.sh)
#   BENCH_MONGO_ARGS=""      extra secantusd-rs flags, e.g. "--oplog-async --data-nonlogged"
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"
va_install_traps

ROWS="${ROWS:-100000}"
REGION="${REGION:-US}"
[[ "$ROWS" =~ ^[0-9]+$ ]] || die "ROWS must be a number (got '$ROWS')"
BENCH_DIR="$VA_DATA_DIR/bench"
FILE="$BENCH_DIR/contacts-$ROWS.xlsx"
mkdir -p "$BENCH_DIR" "$VA_LOG_DIR"

# Pinned versions of the peer's packages (PyPI, checked with `pip index versions`).
PEER_PACKAGES=(pandas==3.1.1 openpyxl==3.1.5 phonenumbers==9.0.43)

# ---- tools -------------------------------------------------------------------------------------
ensure_python_venv
missing=()
for spec in "${PEER_PACKAGES[@]}"; do
    _va_python_has "$VA_VENV" "${spec%%==*}" "${spec##*==}" || missing+=("$spec")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    log "pip install ${missing[*]} into .venv"
    "$VA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" ||
        die "pip install ${missing[*]} failed (is PyPI reachable?)"
fi
ensure_mongo_server
[[ -x /usr/bin/time ]] || va_apt_install time || die "/usr/bin/time is needed (apt-get install time)"

log "building the benchmark (release)"
BENCH_BIN="$(cargo bench -p voice-agent-contacts --bench import --no-run --message-format=json 2>"$VA_LOG_DIR/bench-import-build.log" |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "import":
        print(m["executable"])')" || true
[[ -n "$BENCH_BIN" && -x "$BENCH_BIN" ]] || {
    tail -n 30 "$VA_LOG_DIR/bench-import-build.log" >&2
    die "building the benchmark failed (log: ${VA_LOG_DIR#"$VA_ROOT"/}/bench-import-build.log)"
}

if [[ ! -s "$FILE" ]]; then
    log "generating $ROWS rows into ${FILE#"$VA_ROOT"/}"
    "$BENCH_BIN" generate "$FILE" "$ROWS" >&2
fi

# ---- MongoDB -----------------------------------------------------------------------------------
work="$BENCH_DIR/mongo-$$"
rm -rf "$work"
mkdir -p "$work"
va_remove_on_exit "$work"
port="$(free_port)"
mongo_args=(--host 127.0.0.1 --port "$port" --storage-path "$work" --cache-size 256M)
[[ "$(basename "$MONGO_SERVER_BIN")" == secantusd-rs ]] && mongo_args+=(--log-file-max 16MB)
# shellcheck disable=SC2206
mongo_args+=(${BENCH_MONGO_ARGS:-})
va_start bench-mongo "$VA_LOG_DIR/bench-mongo.log" "$MONGO_SERVER_BIN" "${mongo_args[@]}"
wait_for_port 127.0.0.1 "$port" "MongoDB ($(basename "$MONGO_SERVER_BIN"))" 60 "$VA_LAST_PID"
MONGO_PID="$VA_LAST_PID"
URI="mongodb://127.0.0.1:$port/?directConnection=true"

# ---- runs --------------------------------------------------------------------------------------
# measure NAME COMMAND...: run under /usr/bin/time; keeps the command's key=value lines plus
# wall_seconds and max_rss_mib (whole process, from the kernel) in $BENCH_DIR/NAME.out.
measure() {
    local name="$1"
    shift
    local out="$BENCH_DIR/$name.out" timing="$BENCH_DIR/$name.time"
    log "run: $name"
    /usr/bin/time -f 'wall_seconds=%e\nmax_rss_kib=%M\ncpu_user_seconds=%U\ncpu_sys_seconds=%S' \
        -o "$timing" "$@" >"$out" || die "$name failed (output: ${out#"$VA_ROOT"/})"
    cat "$timing" >>"$out"
}

# value NAME KEY: a figure of a run.
value() {
    sed -n "s/^$2=//p" "$BENCH_DIR/$1.out" | tail -n 1
}

server_cpu() {
    awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$MONGO_PID/stat"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
cpu_before="$(server_cpu)"
measure rust-mongo "$BENCH_BIN" import "$FILE" "$URI" "$REGION"
SERVER_CPU="$(awk -v a="$cpu_before" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')"
measure rust-parse "$BENCH_BIN" parse "$FILE" "$REGION"
measure python-peer "$VA_VENV/bin/python" contacts/bench/peer_import.py "$FILE" "$REGION"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- report ------------------------------------------------------------------------------------
row() {
    printf '%-28s %18s %18s %18s\n' "$@"
}
mib() {
    awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }'
}

echo
echo "Contact import benchmark: $(basename "$FILE") ($(du -h "$FILE" | cut -f1)), region $REGION"
echo "machine: $(nproc) cores, load average before ${LOAD_BEFORE}, after ${LOAD_AFTER}"
echo "MongoDB: $(basename "$MONGO_SERVER_BIN") ${mongo_args[*]:4}"
echo
row "" "ours, into MongoDB" "ours, parse only" "Python peer"
row "rows" "$(value rust-mongo rows)" "$(value rust-parse rows)" "$(value python-peer rows)"
row "imported (unique, valid)" "$(value rust-mongo imported)" "$(value rust-parse imported)" "$(value python-peer imported)"
row "merged duplicates" "$(value rust-mongo merged)" "$(value rust-parse merged)" "$(value python-peer merged)"
row "rejected" "$(value rust-mongo rejected)" "$(value rust-parse rejected)" "$(value python-peer rejected)"
row "import time (s)" "$(value rust-mongo import_seconds)" "$(value rust-parse import_seconds)" "$(value python-peer import_seconds)"
row "  of which parsing (s)" "$(value rust-mongo parse_seconds)" "$(value rust-parse import_seconds)" "-"
row "  of which MongoDB writes (s)" "$(value rust-mongo write_seconds)" "-" "-"
row "rows/s" "$(value rust-mongo rows_per_second)" "$(value rust-parse rows_per_second)" "$(value python-peer rows_per_second)"
row "process wall time (s)" "$(value rust-mongo wall_seconds)" "$(value rust-parse wall_seconds)" "$(value python-peer wall_seconds)"
row "peak RSS (MiB)" "$(mib "$(value rust-mongo max_rss_kib)")" "$(mib "$(value rust-parse max_rss_kib)")" "$(mib "$(value python-peer max_rss_kib)")"
row "MongoDB server CPU (s)" "$SERVER_CPU" "-" "-"
echo
peer="$(value python-peer import_seconds)"
echo "speed-up over the peer: end to end into MongoDB $(ratio "$peer" "$(value rust-mongo import_seconds)")," \
    "parse only $(ratio "$peer" "$(value rust-parse import_seconds)")"
echo "targets: end to end <= 2 s and >= 10x the peer (import time above: from reading the file to"
echo "the last write acknowledged; connecting and creating the list are not counted)"
echo "raw figures: ${BENCH_DIR#"$VA_ROOT"/}/{rust-mongo,rust-parse,python-peer}.out"
