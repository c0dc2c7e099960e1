#!/usr/bin/env bash
# Runs libFuzzer targets (built by `make sanitize-build`) for a given time each: scripts/fuzz.sh BUILD SECONDS T...
# Each target starts from its committed seeds (fuzz/corpus/T) plus what earlier runs found (BUILD/fuzz-corpus/T);
# a crash, sanitizer report, leak, timeout (10 s per input) or out-of-memory (2 GB) fails the run, and the input is
# kept in BUILD/fuzz-artifacts/. Prints the executions per target.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="$1"; seconds="$2"; shift 2
mkdir -p "$build/fuzz-artifacts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
summary=""
for t in "$@"; do
  bin="$build/${t}_fuzz"
  [ -x "$bin" ] || { echo "fuzz: $bin is missing (make sanitize-build)" >&2; failed+=("$t"); continue; }
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  dict=()
  [ -f "$here/fuzz/$t.dict" ] && dict=(-dict="$here/fuzz/$t.dict")
  log="$build/fuzz-artifacts/$t.log"
  # -jobs/-workers stay 1: the machine's cores are the build's. Seeds are read from fuzz/corpus, never written.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-" "${dict[@]}" \
    "$work" "$here/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  summary+=$(printf '%-12s %12s executions in %ss%s' "$t" "${execs:-?}" "$seconds" "$([ $rc -ne 0 ] && echo "  FAILED (rc $rc, see $log)")")$'\n'
  [ $rc -ne 0 ] && { failed+=("$t"); tail -40 "$log" >&2; }
done
printf '%s' "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]} (inputs in $build/fuzz-artifacts/)" >&2
  exit 1
fi
