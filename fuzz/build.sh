#!/usr/bin/env bash
# Builds the libFuzzer target for the checkpoint reader with clang-14 (ASan + UBSan), seeds it
# with checkpoints written by Python's torch.save, and runs it.
#   fuzz/build.sh              build into build-fuzz/checkpoint/ and fuzz for 60 s
#   fuzz/build.sh SECONDS      fuzz for SECONDS (0: build and seed only)
#   fuzz/build.sh SECONDS -- ARGS   extra libFuzzer arguments (e.g. -jobs=2)
# Needs clang-14 and Debian's libtorch-dev; /usr/bin/python3 with torch for the seeds.
# Findings (crash-*, leak-*, oom-*, timeout-*) land in build-fuzz/checkpoint/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/build-fuzz/checkpoint"  # beside scripts/fuzz's data targets in build-fuzz/
seconds=${1:-60}
shift || true
[ "${1:-}" = "--" ] && shift
mkdir -p "$out/corpus" "$out/seeds"

sources=(
  "$root/fuzz/checkpoint_fuzzer.cpp"
  "$root"/src/serialize/*.cpp
)
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I"$root/include" -isystem /usr/include/torch/csrc/api/include
  -Wno-deprecated-declarations)
if [ ! -x "$out/checkpoint_fuzzer" ] || [ -n "$(find "${sources[@]}" "$root/include" \
    -newer "$out/checkpoint_fuzzer" -print -quit)" ]; then
  echo "fuzz: building $out/checkpoint_fuzzer" >&2
  objs=()
  for src in "${sources[@]}"; do
    obj="$out/$(basename "$src" .cpp).o"
    clang++-14 "${flags[@]}" -c "$src" -o "$obj" &
    objs+=("$obj")
    # at most two compilers at a time
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  done
  wait
  clang++-14 "${flags[@]}" "${objs[@]}" -o "$out/checkpoint_fuzzer" \
    -ltorch -ltorch_cpu -lc10 -lz -lpthread
fi

if [ -z "$(ls -A "$out/seeds")" ]; then
  /usr/bin/python3 "$root/tests/serialize/python/write_checkpoints.py" "$out/seeds"
  rm -rf "$out/seeds/small_zip"  # extracted records, not checkpoints
fi
[ "$seconds" -eq 0 ] && exit 0
cd "$out"
# libtorch (not instrumented) keeps some allocations for the life of the process.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp:print_suppressions=0}"
exec "$out/checkpoint_fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -malloc_limit_mb=1024 "$@" "$out/corpus" "$out/seeds"
