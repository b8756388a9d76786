#!/usr/bin/env bash
# The fuzz smoke run of CI: builds every fuzz target (unoptimised, `--dev`: a release build
# of this dependency tree takes over ten CPU minutes) and runs each for a short while
# (FUZZ_SECONDS, default 15) over its seeds, two at a time (CI has 2 cores). Fails when a
# target crashes, leaks, times out or runs out of memory; the input that did it is kept
# under tests/fuzz/artifacts/<target>/ and its path is printed. Needs cargo-fuzz
# (`cargo install cargo-fuzz --locked`); builds on stable with RUSTC_BOOTSTRAP=1 (README.md).
set -euxo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-15}
export RUSTC_BOOTSTRAP=1

cargo fuzz build --dev
# A scratch corpus per target: the seeds are only read, and what the run finds is dropped.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
run() {
    local target=$1
    mkdir -p "$scratch/$target"
    if cargo fuzz run --dev "$target" "$scratch/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$scratch/$target.log" 2>&1; then
        echo "fuzz smoke: $target ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$scratch/$target.log"))"
    else
        echo "fuzz smoke: $target FAILED"
        tail -n 60 "$scratch/$target.log"
        return 1
    fi
}
targets=$(cargo fuzz list)
set +x
failed=0
# Two at a time: start a pair, wait for both.
set -- $targets
while [ $# -gt 0 ]; do
    pids=()
    for target in "$1" "${2:-}"; do
        [ -n "$target" ] || continue
        run "$target" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    shift $(( $# >= 2 ? 2 : 1 ))
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz smoke: a target failed (inputs under tests/fuzz/artifacts/)"
    exit 1
fi
echo "fuzz smoke: every target ran ${seconds} s without a crash"
