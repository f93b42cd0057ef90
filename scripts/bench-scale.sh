#!/usr/bin/env bash
# Scale and cost side by side (benches/scale.rs): this build's `smtp-prober serve`, optionally an
# older build as the baseline, and blackbox_exporter on the same STARTTLS targets, all in one run.
#
#   bash scripts/bench-scale.sh                       # this build against blackbox_exporter
#   bash scripts/bench-scale.sh --baseline=REV        # and the binary built from git revision REV
#   SMTP_PROBER_BASELINE=/path/to/smtp-prober bash scripts/bench-scale.sh   # a binary you have
#   SMTP_PROBER_BENCH_SECTIONS=probe,postfix bash scripts/bench-scale.sh    # some sections only
#   SMTP_PROBER_BENCH_SIZES=1000 bash scripts/bench-scale.sh                # smaller scale runs
#
# 1. Installs Debian's prometheus-blackbox-exporter when it is missing and this user may install
#    packages (its service is kept from starting, as scripts/test.sh does for Postfix); without
#    it the comparison is skipped with one line.
# 2. With --baseline=REV: builds REV's binary in a git worktree under target/baseline (its own
#    target directory, release profile) and measures it beside this build.
# 3. cargo bench --bench scale, with a higher priority when allowed (nice -n -5), the full output
#    in target/bench-scale.log; prints the summary table at the end of it.
#
# Takes about 15 minutes with a baseline (each binary schedules 1,000 and 10,000 targets on a
# 60 s interval), 8 without. Loopback only. Real Postfix (section 2) needs root and the packages
# scripts/test.sh installs; without them that section is skipped with one line.
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

log() { printf 'bench-scale.sh: %s\n' "$*" >&2; }

baseline_rev=""
for arg in "$@"; do
  case $arg in
    --baseline=*) baseline_rev=${arg#--baseline=} ;;
    *) log "unknown argument $arg"; exit 2 ;;
  esac
done

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

install_blackbox() {
  command -v prometheus-blackbox-exporter >/dev/null && return 0
  command -v apt-get >/dev/null || return 0
  log "installing prometheus-blackbox-exporter (Debian) for the comparison"
  local policy=/usr/sbin/policy-rc.d created=""
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy" || return 0
    created=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus-blackbox-exporter >/dev/null 2>&1 ||
    log "could not install prometheus-blackbox-exporter; the comparison will be skipped"
  [[ -z $created ]] || as_root rm -f "$policy"
  # The package enables its service; this benchmark starts its own on a free port.
  if [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now prometheus-blackbox-exporter >/dev/null 2>&1 || true
  fi
}

build_baseline() {
  local rev=$1 tree=target/baseline/tree
  log "building the baseline from $rev in $tree"
  mkdir -p target/baseline
  if [[ -d $tree ]]; then
    git -C "$tree" checkout -q --detach "$rev"
  else
    git worktree add -q --detach "$tree" "$rev"
  fi
  (cd "$tree" && CARGO_TARGET_DIR=../target nice -n 10 cargo build --release --quiet --bin smtp-prober)
  SMTP_PROBER_BASELINE=$PWD/target/baseline/target/release/smtp-prober
  export SMTP_PROBER_BASELINE
}

install_blackbox
[[ -z $baseline_rev ]] || build_baseline "$baseline_rev"

nice_cmd=(nice -n -5)
"${nice_cmd[@]}" true 2>/dev/null || nice_cmd=()
cargo bench --bench scale --no-run --quiet
log_file=target/bench-scale.log
log "running (full output in $log_file; ${nice_cmd[*]:-default priority})"
"${nice_cmd[@]}" cargo bench --bench scale --quiet 2>&1 | tee "$log_file"
