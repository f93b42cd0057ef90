#!/usr/bin/env bash
# Runs the benchmarks (DESIGN §10 "Speed and scale") and prints a summary table.
#
#   bash scripts/bench.sh [`cargo bench` arguments instead of the three benches, e.g. `--bench probe`]
#
# `cargo bench` builds the release profile and runs benches/{parse,probe,metrics}.rs, which print
# their figures and `result: NAME = VALUE UNIT` lines; this script keeps the full output in
# target/bench.log and prints the headline figures, then every result. Loopback only. About two
# to three minutes on two cores once built. The figures are medians of one run on a machine
# that may be shared: compare runs on the same machine, not across machines.
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

# Only the bench targets by default: plain `cargo bench` (and `--benches`) would also run the
# library's unit-test harness, which lists every test as ignored.
args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=(--bench parse --bench probe --bench metrics)
log=target/bench.log
mkdir -p target
echo "bench.sh: cargo bench ${args[*]} (full output in $log)" >&2
started=$(date +%s)
if ! cargo bench "${args[@]}" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "bench.sh: cargo bench failed; see $log" >&2
  exit 1
fi
elapsed=$(( $(date +%s) - started ))

# VALUE of a result, or "-" when that bench did not run.
value() {
  awk -v k="$1" '$1 == "result:" && $2 == k { print $4 " " $5; found = 1; exit }
    END { if (!found) print "-" }' "$log"
}

row() { printf '  %-58s %s\n' "$1" "$(value "$2")"; }

echo
echo "Headline figures ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), ${elapsed}s incl. build)"
echo " probes against the embedded demo server (in one process)"
row "STARTTLS+AUTH probe, sequential, median" probe.starttls.sequential.median
row "STARTTLS+AUTH probe, sequential, p99" probe.starttls.sequential.p99
row "STARTTLS+AUTH probes/s, concurrency 1" probe.starttls.c1.per_second
row "STARTTLS+AUTH probes/s, concurrency 8" probe.starttls.c8.per_second
row "STARTTLS+AUTH probes/s, concurrency 32" probe.starttls.c32.per_second
row "plain-text+AUTH probes/s, concurrency 32" probe.plain.c32.per_second
echo " CPU per probe, server in a child process (concurrency 8)"
row "STARTTLS+AUTH: prober" split.starttls.c8.cpu_per_probe_prober
row "STARTTLS+AUTH: server" split.starttls.c8.cpu_per_probe_server
row "plain-text+AUTH: prober" split.plain.c8.cpu_per_probe_prober
row "smtp-prober serve, exporter CPU per STARTTLS /probe (c=8)" http.starttls.c8.exporter_cpu_per_probe
row "smtp-prober serve, STARTTLS /probe latency median (c=1)" http.starttls.c1.latency_median
echo " step timing vs the bare loopback round trip (server in a child process)"
row "ehlo step, median" overhead.split.ehlo_step.median
row "bare NOOP round trip, median" overhead.split.bare_noop.median
row "ehlo step minus bare NOOP" overhead.split.ehlo_step_minus_noop
echo " /metrics with 10,000 scheduled targets"
row "render (256 KiB pieces, as served), median" metrics.10000.render_pieces
row "  CPU time of the rendering thread, median" metrics.10000.render_pieces_cpu
row "  of which per-probe families" metrics.10000.render_merge
row "  of which scheduled histograms" metrics.10000.render_totals
row "page size" metrics.10000.page_size
row "RSS per target, first result in" metrics.10000.rss_per_target
row "RSS per target at steady state (1,000 targets)" metrics.1000.rss_per_target_steady
echo " reply parser"
row "typical EHLO reply" parse.ehlo.per_reply
row "1 KiB multiline reply" parse.multiline_1k.throughput
row "64 KiB garbage without newline, time to reject" parse.reject.garbage_64k

echo
echo "Every result"
awk '$1 == "result:" { printf "  %-58s %s %s\n", $2, $4, $5 }' "$log"
