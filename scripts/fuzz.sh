#!/usr/bin/env bash
# Fuzz targets (fuzz/, cargo-fuzz + libFuzzer): builds them, then runs each for a while.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#     SECONDS_PER_TARGET  default 60; scripts/test.sh runs 20; 0 only builds
#     TARGET              default all: import phone signature twiml relay
#
# Each run starts from the committed seeds (fuzz/seeds/<target>) plus what earlier runs found
# (fuzz/corpus/<target>, git-ignored), and fails on a panic, a crash, an input that takes
# longer than FUZZ_TIMEOUT_S, or memory over a bound: each target's allocator aborts when the
# bytes live at once exceed the bound it sets per input, and libFuzzer's -rss_limit_mb caps
# the process. A failing input is written to fuzz/artifacts/<target>/; replay it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
#
# Environment (all optional):
#   CARGO_TARGET_DIR   the fuzz build goes to $CARGO_TARGET_DIR/fuzz (else fuzz/target)
#   FUZZ_SANITIZER     none (default: the code is safe Rust, and runs go ~2x faster) or address
#   FUZZ_TIMEOUT_S     per-input time limit, default 10
#   FUZZ_RSS_LIMIT_MB  whole-process memory limit, default 2048
#   FUZZ_JOBS          parallel jobs per target, default 1
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VA_ROOT"

CARGO_FUZZ_VERSION="0.13.2"
ALL_TARGETS=(import phone signature twiml relay)

seconds="${1:-60}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
[[ "$seconds" =~ ^[0-9]+$ ]] || die "SECONDS_PER_TARGET must be a whole number, not '$seconds'"

rustup toolchain list | grep -q '^nightly' ||
    die "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly --profile minimal"
# Installed once (the CI cache keeps ~/.cargo/bin); a different version is replaced.
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked
fi

fuzz_args=(--sanitizer "${FUZZ_SANITIZER:-none}" --release --debug-assertions)
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    fuzz_args+=(--target-dir "$CARGO_TARGET_DIR/fuzz")
fi

log "building the fuzz targets: ${targets[*]}"
for target in "${targets[@]}"; do
    cargo +nightly fuzz build "${fuzz_args[@]}" "$target"
done

if [[ "$seconds" -eq 0 ]]; then
    log "built (0 seconds: no run)"
    exit 0
fi

for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    log "fuzzing $target for ${seconds}s"
    libfuzzer_args=(
        -max_total_time="$seconds"
        -timeout="${FUZZ_TIMEOUT_S:-10}"
        -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}"
        -print_final_stats=1
    )
    # -jobs=1 would still fork a child that logs to a file; only ask for it when parallel.
    if [[ "${FUZZ_JOBS:-1}" -gt 1 ]]; then
        libfuzzer_args+=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
    fi
    cargo +nightly fuzz run "${fuzz_args[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
        "${libfuzzer_args[@]}"
done
log "fuzzing passed: ${targets[*]}, ${seconds}s each"
