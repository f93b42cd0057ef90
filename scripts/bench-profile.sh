#!/usr/bin/env bash
# Where the exporter's CPU goes on /probe: `perf record` of `smtp-prober serve` while wrk sends
# STARTTLS probes through /probe, against the embedded demo server in its own process (the
# server of benches/scale.rs), then the hottest functions and the share of each part.
#
#   bash scripts/bench-profile.sh [SECONDS (10)] [CONCURRENCY (8)] [BINARY]
#
# Needs perf (Debian linux-perf) and wrk (Debian wrk); installs them with apt-get when missing
# and allowed. perf samples the cpu-clock software event, which works on virtual machines
# without hardware counters (`perf stat -e instructions` says "not supported" there). Release
# builds carry line tables (profile.release.debug = 1), so symbols resolve. Output: the report
# in target/profile/report.txt, the raw data in target/profile/perf.data.
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
seconds=${1:-10}
concurrency=${2:-8}
binary=${3:-}

log() { printf 'bench-profile.sh: %s\n' "$*" >&2; }

for tool in perf wrk; do
  if ! command -v "$tool" >/dev/null; then
    package=$tool
    [[ $tool == perf ]] && package=linux-perf
    log "installing $package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" \
      >/dev/null || { log "cannot install $package"; exit 1; }
  fi
done

bench=$(cargo bench --bench scale --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*scale-[^"]*\)".*/\1/p' | tail -n 1)
[[ -x $bench ]] || { log "could not build benches/scale.rs"; exit 1; }
[[ -n $binary ]] || binary=$PWD/target/release/smtp-prober

out=target/profile
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The demo server: the benchmark in its server role, running until its stdin closes.
mkfifo "$work/server-stdin"
SMTP_PROBER_BENCH_SERVER_DIR=$work "$bench" <"$work/server-stdin" >"$work/server.out" 2>&1 &
pids+=($!)
exec 7>"$work/server-stdin"
for _ in $(seq 100); do grep -q '^stalled ' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
server=$(sed -n 's/^fast //p' "$work/server.out")

cat >"$work/smtp-prober.yml" <<EOF
modules:
  starttls:
    timeout: 10s
    tls: starttls
    ehlo: bench.test
    tls_config: {server_name: localhost, trust: [], ca_files: ["$work/root.pem"]}
EOF
"$binary" serve --config.file="$work/smtp-prober.yml" --web.listen-address=127.0.0.1:0 \
  2>"$work/exporter.log" &
exporter=$!
pids+=("$exporter")
for _ in $(seq 100); do grep -q 'listening' "$work/exporter.log" 2>/dev/null && break; sleep 0.1; done
address=$(sed -n 's/.*address=\([0-9.:]*\).*/\1/p' "$work/exporter.log" | head -n 1)
url="http://$address/probe?module=starttls&target=$server"
curl -fsS "$url" | grep '^probe_success 1$' >/dev/null || { log "the probe does not succeed"; exit 1; }

log "profiling $binary for ${seconds}s at concurrency $concurrency"
wrk -t 2 -c "$concurrency" -d "$((seconds + 2))s" "$url" >"$work/wrk.out" &
pids+=($!)
sleep 1
perf record -e cpu-clock -F 1999 -g -p "$exporter" -o "$out/perf.data" -- sleep "$seconds" \
  2>/dev/null
wait "${pids[-1]}" || true
cat "$work/wrk.out" >&2

perf report -i "$out/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 \
  2>/dev/null | grep -v '^$' >"$out/report.txt"
# The share of each part, from the symbols' crate paths.
perf report -i "$out/perf.data" --stdio --no-children --sort symbol -g none 2>/dev/null |
  awk '/%/ && $1 ~ /%$/ {
    p = $1; sub("%", "", p); s = $0
    if (s ~ /ring::|ring_core|p256|x25519|sha256|sha512|aes_|gcm|chacha|fiat_|bn_mul|ecp_nistz/) k = "crypto (ring)"
    else if (s ~ /rustls::|webpki::/) k = "rustls, webpki (TLS state, chain)"
    else if (s ~ /x509_parser|der_parser|asn1_rs|nom::/) k = "x509-parser (certificate facts)"
    else if (s ~ /hyper::|axum::|http::|tower::|h1_|httparse/) k = "HTTP (hyper, axum)"
    else if (s ~ /tokio::|mio::/) k = "tokio runtime"
    else if (s ~ /smtp_prober::/) k = "smtp-prober"
    else if (s ~ /\[k\]/) k = "kernel (syscalls, network)"
    else if (s ~ /malloc|free|realloc|memcpy|memmove|memset|cfree|_int_/) k = "libc (allocator, memcpy)"
    else k = "other"
    share[k] += p
  } END { for (k in share) printf "  %6.1f%%  %s\n", share[k], k }' | sort -rn >"$out/parts.txt"
echo "Where the exporter's CPU goes (share of samples):"
cat "$out/parts.txt"
echo
echo "Hottest functions (target/profile/report.txt):"
grep '%' "$out/report.txt" | head -n 40
