#!/bin/sh
# Writes prometheusrule.yaml: the shipped alert rules (deploy/prometheus/smtp-prober-rules.yml)
# as a Prometheus Operator PrometheusRule. Run it after every change of the rules file; the test
# suite fails while the two differ.
#
#   sh deploy/kubernetes/prometheus-operator/generate-prometheusrule.sh [OUTPUT]
set -eu
here=$(dirname "$0")
rules="$here/../../prometheus/smtp-prober-rules.yml"
out=${1:-"$here/prometheusrule.yaml"}

{
  cat <<'HEADER'
# Generated from deploy/prometheus/smtp-prober-rules.yml by generate-prometheusrule.sh in this
# directory: edit the rules file, then run the script.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: smtp-prober
  labels:
    app.kubernetes.io/name: smtp-prober
spec:
HEADER
  # The rules file's top level (`groups:`) becomes the spec; comments and a document start
  # marker are left out, blank lines stay blank.
  grep -v -e '^#' -e '^---' "$rules" | sed -e 's/^./  &/'
} >"$out.tmp"
mv "$out.tmp" "$out"
