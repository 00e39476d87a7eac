#!/usr/bin/env bash
# Runs plumb's fuzz targets with cargo-fuzz (nightly, AddressSanitizer).
#   scripts/fuzz.sh                 every target, 30 minutes each
#   scripts/fuzz.sh promql 600      one target, 600 seconds
# Seeds come from fuzz/seeds/<target> (committed); the growing corpus is
# fuzz/corpus/<target> (not committed). A crash is saved under
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/, where
# tests/fuzz_corpus.rs runs it on every test run, and fix the bug.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
seconds="${2:-1800}"
if [ $# -ge 1 ]; then targets=("$1"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target for ${seconds}s"
  cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 2>&1 | tail -n 3
done
