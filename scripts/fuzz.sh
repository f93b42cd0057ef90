#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a while each (nightly toolchain and cargo-fuzz needed:
# `rustup toolchain install nightly && cargo install cargo-fuzz`).
#
#   bash scripts/fuzz.sh [SECONDS per target, default 60] [target...]
#
# Targets (fuzz/fuzz_targets/): imap_transport (the bounded IMAP transport), smtp_reply (the SMTP
# reply parser: limits, and the same replies whole or in small reads), ehlo_extensions (EHLO
# keywords and their printable descriptions), config_loader (Config::from_str never panics and
# names the file in its errors). On a shared machine run them one at a time under `nice -n 19`;
# a build takes long (sanitizer coverage over every dependency), so CARGO_TARGET_DIR may point at
# a fast disk.
#
# The corpora in fuzz/corpus/ are small seeds kept in git; what a run adds to them stays local
# unless it is worth keeping (then `cargo +nightly fuzz cmin` first). A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes this script exit non-zero.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
  # New inputs go to a scratch directory; the committed seeds are only read.
  work=$(mktemp -d)
  log="$work.log"
  echo "fuzzing $target for ${seconds}s"
  set +e
  cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|panicked|crash-' "$log" || true
  rm -rf "$work"
  if [[ $status -ne 0 ]]; then
    tail -40 "$log"
    echo "fuzz target $target failed (status $status): the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  rm -f "$log"
done
