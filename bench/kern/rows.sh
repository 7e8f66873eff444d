#!/usr/bin/env bash
# bench/kern/rows.sh: a model's weight products at N rows (bench/kern/rows.c), 2 threads unless OMP_NUM_THREADS
# says otherwise. The decode figures of docs/kernels.md ("AVX2 + FMA without AVX-512") and the GEMM rates of
# bench/RESULTS.md ("Retrieval") come from it:
#   bash bench/kern/rows.sh 16 d6        bash bench/kern/rows.sh 1344 minilm
# (the "before" columns: this program built against the library of commit 8e97eb5).
set -eu
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
. bench/build_flags.sh
make -s -j2 build/libgptkit.a
mkdir -p build/bench
${CC:-gcc} $CFLAGS bench/kern/rows.c build/libgptkit.a -o build/bench/rows $(make -s print-ldlibs)
build/bench/rows "$@"
