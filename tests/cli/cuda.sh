#!/usr/bin/env bash
# CLI tests for `--device cuda` (= `--backend cuda`; docs/cuda.md) on a machine without a GPU, or in a build
# without CUDA: every command refuses at once with one line on stderr naming the reason and exits non-zero
# (status 2, no crash, no abort). Where a GPU is present the refusal cannot happen: SKIP (the GPU tests are
# tests/test_cuda.c and scripts/gpu-check.sh).
source "$(dirname "$0")/_lib.sh"
G=$GPTKIT
cd "$TMP"

if $G --device cuda --help >/dev/null 2>&1; then
  skip cuda_refused_without_gpu "a CUDA device is usable here"
  skip cuda_refusal_one_line "a CUDA device is usable here"
  exit 0
fi
expect_fail cuda_refused_without_gpu '^gptkit: --device cuda: (no CUDA device|this build has no CUDA backend)' \
  $G --device cuda sample --model nowhere --prompt hi
err=$($G --backend=cuda info nowhere 2>&1 >/dev/null); rc=$?
n=$(printf '%s\n' "$err" | grep -c .)
if [ "$rc" -eq 2 ] && [ "$n" -eq 1 ]; then pass cuda_refusal_one_line
else fail cuda_refusal_one_line "status $rc, $n lines: $err"; fi
# the option's value is checked like --backend's
expect_fail cuda_device_unknown "takes cpu, ref or cuda" $G --device tpu --help
# --device cpu is the default backend
b=$($G --device cpu --help | sed -n 's/^backend: //p')
case "$b" in cpu-fast*) pass cuda_device_cpu;; *) fail cuda_device_cpu "backend line: $b";; esac
