#!/usr/bin/env bash
# Validates everything in dashboards/ with promtool (Debian package
# `prometheus`): the alert and recording rules, their unit tests, and
# every PromQL expression of the Grafana dashboard (extracted into
# generated/dashboard-exprs.rules.yml; `cargo test -p phimon-exporter
# --test all dashboards` fails when that file is stale).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null 2>&1; then
  echo "dashboards/check.sh: promtool not found (apt-get install prometheus)" >&2
  exit 1
fi

promtool check rules rules/*.yml
promtool test rules tests/*.test.yml
promtool check rules generated/dashboard-exprs.rules.yml

# The dashboard must use the datasource variable everywhere, never a
# hard-coded datasource uid.
if grep -n '"uid": *"[^$]' phimon.json | grep -v '"uid": "phimon-fleet"'; then
  echo "dashboards/check.sh: phimon.json hard-codes a datasource uid" >&2
  exit 1
fi
echo "dashboards: rules, rule tests and dashboard expressions OK"
