#!/usr/bin/env bash
# A short run of every fuzz target on its committed corpus (CI): builds the
# targets with cargo-fuzz, then fuzzes each for FUZZ_SECONDS (default 25).
# A crash fails the run and leaves the input in fuzz/artifacts/TARGET/.
# Long runs: see docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-25}
# cargo-fuzz needs nightly flags (-Z); the stable toolchain accepts them with this.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --help >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# Natter has no unsafe code: coverage guidance is what matters, not a sanitizer.
flags=(--sanitizer none --dev)
cargo fuzz build "${flags[@]}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${seconds}s"
  # New inputs go to the scratch dir; the committed corpus is only read.
  log="$scratch/$target.log"
  if ! cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    # The panic's message comes before the backtrace, which the tail may not reach back to.
    grep -m 1 -A 1 "panicked at" "$log" || true
    tail -n 60 "$log"
    echo "fuzz: $target FAILED (the input is in fuzz/artifacts/$target/)"
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
done
echo "fuzz smoke: all targets ran clean"
