#!/usr/bin/env bash
# Builds benchmarks/kernel_harness.c as its header says, warnings as errors,
# into a temporary directory, and runs every op and mode once on a tiny line
# with the default table and the baseline one: a smoke test that the harness
# still compiles against csrc/ and runs.  Exits non-zero on any failure.
#   bash benchmarks/build_harness.sh      (CC=clang to try another compiler;
#                                          HARNESS_OPT=-O1 for a quicker build)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
CFLAGS=("${HARNESS_OPT:--O3}" -std=c11 -DNDEBUG -fwrapv -fno-trapping-math -ffp-contract=fast
        -Wall -Wextra -Werror -Icsrc -pthread)
# one compiler per file, side by side: the ISA variants are most of the time
pids=()
for src in benchmarks/kernel_harness.c csrc/isa_*.c csrc/dispatch.c csrc/driver.c csrc/threads.c; do
    "${CC:-gcc}" "${CFLAGS[@]}" -c "$src" -o "$OUT/$(basename "$src" .c).o" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"${CC:-gcc}" -o "$OUT/harness" "$OUT"/*.o -lm -pthread
for isa in "" baseline; do
    for op in 0 1 2 3 4; do
        for dtype in 32 64; do
            for mode in 0 1 2 3; do
                SCANAD_ISA=$isa "$OUT/harness" "$op" "$dtype" "$mode" 1 1000 0 2 >/dev/null
            done
        done
        SCANAD_ISA=$isa "$OUT/harness" "$op" 64 0 64 48 0 2
    done
    for dtype in 32 64; do  # linear_scan, forward: a line, a panel, a scalar a
        SCANAD_ISA=$isa "$OUT/harness" 5 "$dtype" 0 1 1000 0 2 >/dev/null
        SCANAD_ISA=$isa "$OUT/harness" 5 "$dtype" 0 64 48 0 2 >/dev/null
        SCANAD_ISA=$isa HARNESS_SCALAR_A=1 "$OUT/harness" 5 "$dtype" 0 64 48 1 2 >/dev/null
    done
done
echo "kernel harness: built and ran"
