#!/usr/bin/env bash
# Validates the deployment files without a cluster or a container engine:
# systemd-analyze verify on the unit, YAML parsing and schema checks on the
# Kubernetes manifests, and a structural check of the Containerfile.
set -euo pipefail
cd "$(dirname "$0")"

if command -v systemd-analyze >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # verify checks that ExecStart binaries exist: point them at a stand-in.
  sed 's#/usr/local/bin/phimon#/bin/true#g' phimon.service >"$tmp/phimon.service"
  out=$(systemd-analyze verify "$tmp/phimon.service" 2>&1 || true)
  if [ -n "$out" ]; then
    echo "systemd-analyze verify phimon.service:"; echo "$out"; exit 1
  fi
  echo "phimon.service: systemd-analyze verify ok"
else
  echo "phimon.service: systemd-analyze not installed, skipped" >&2
fi
for key in DynamicUser=yes ProtectSystem=strict "CapabilityBoundingSet=$" NoNewPrivileges=yes; do
  grep -Eq "^$key" phimon.service || { echo "phimon.service lacks $key"; exit 1; }
done

python3 - <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open("kubernetes/phimon.yaml")) if d]
kinds = {d["kind"]: d for d in docs}
for k in ["Namespace", "ConfigMap", "DaemonSet", "Service", "ServiceMonitor"]:
    assert k in kinds, f"missing {k}"
for d in docs:
    for f in ["apiVersion", "kind", "metadata"]:
        assert f in d, f"{d.get('kind')} lacks {f}"
ds = kinds["DaemonSet"]
spec = ds["spec"]["template"]["spec"]
assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items(), "selector does not match pod labels"
c = spec["containers"][0]
for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
    assert c[probe]["httpGet"]["path"] == path, probe
assert spec["securityContext"]["runAsNonRoot"] is True
assert c["securityContext"]["allowPrivilegeEscalation"] is False
assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
ann = ds["spec"]["template"]["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true"
mounts = {m["name"] for m in c["volumeMounts"]}
vols = {v["name"] for v in spec["volumes"]}
assert mounts <= vols, f"mounts without volumes: {mounts - vols}"
assert any(v.get("secret") for v in spec["volumes"]), "certificates must come from a Secret"
env = {e["name"] for e in c["env"]}
assert {"PHIMON_NODE_ID", "PHIMON_TLS_CERT", "PHIMON_TLS_KEY"} <= env
print("kubernetes/phimon.yaml: %d documents ok" % len(docs))
# The embedded config must parse as TOML.
import tomllib
tomllib.loads(kinds["ConfigMap"]["data"]["phimon.toml"])
PY

grep -q '^FROM .* AS build' Containerfile && grep -q '^USER ' Containerfile && ! grep -q '^USER root' Containerfile \
  || { echo "Containerfile must be multi-stage and run as a non-root USER"; exit 1; }
echo "Containerfile: multi-stage, non-root ok"
