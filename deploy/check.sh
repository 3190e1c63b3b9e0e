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
import subprocess, sys, tempfile, tomllib, yaml

def load(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    for d in docs:
        for f in ["apiVersion", "kind", "metadata"]:
            assert f in d, f"{path}: {d.get('kind')} lacks {f}"
    return docs

def named(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"missing {kind} {name or ''}"
    return found[0]

def check_daemonset(path, docs):
    """What both manifests share: the DaemonSet's shape, probes, hardening,
    and that no node key comes from a Secret."""
    for k in ["Namespace", "ConfigMap", "DaemonSet", "Service", "ServiceMonitor", "ServiceAccount"]:
        named(docs, k)
    ds = named(docs, "DaemonSet")
    tpl = ds["spec"]["template"]
    spec = tpl["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items(), "selector does not match pod labels"
    containers = {c["name"]: c for c in spec["containers"]}
    inits = {c["name"]: c for c in spec.get("initContainers", [])}
    c = containers["phimon"]
    for probe, want in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
        assert c[probe]["httpGet"]["path"] == want, probe
    assert spec["securityContext"]["runAsNonRoot"] is True
    for x in list(containers.values()) + list(inits.values()):
        sc = x.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, f"{x['name']}: allowPrivilegeEscalation"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{x['name']}: capabilities"
        assert sc.get("readOnlyRootFilesystem") is True, f"{x['name']}: readOnlyRootFilesystem"
        mounts = {m["name"] for m in x.get("volumeMounts", [])}
        vols = {v["name"] for v in spec["volumes"]}
        assert mounts <= vols, f"{x['name']}: mounts without volumes: {mounts - vols}"
    assert tpl["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    # One key per node, made in the pod: no Secret volume at all (a Secret
    # in a DaemonSet's pod template is the same for every node), and no
    # projected Secret either.
    for v in spec["volumes"]:
        assert "secret" not in v, f"{path}: volume {v['name']} mounts a Secret into every pod"
        for src in v.get("projected", {}).get("sources", []):
            assert "secret" not in src, f"{path}: volume {v['name']} projects a Secret"
    assert not any(d["kind"] == "Secret" for d in docs), f"{path}: ships a Secret"
    vols = {v["name"]: v for v in spec["volumes"]}
    env = {e["name"]: e for e in c["env"]}
    assert {"PHIMON_NODE_ID", "PHIMON_TLS_CERT", "PHIMON_TLS_KEY"} <= env.keys()
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # The key's directory is an in-memory emptyDir, read-only for phimon.
    key_dir = env["PHIMON_TLS_KEY"]["value"].rsplit("/", 1)[0]
    tls_mount = [m for m in c["volumeMounts"] if m["mountPath"] == key_dir]
    assert tls_mount, f"{path}: nothing mounted at the key's directory {key_dir}"
    assert tls_mount[0].get("readOnly") is True, "phimon mounts its TLS directory read-only"
    key_vol = vols[tls_mount[0]["name"]]
    assert key_vol.get("emptyDir", {}).get("medium") == "Memory", f"{path}: the key must live in an emptyDir with medium Memory"
    # phimon itself holds no API credentials.
    assert spec.get("automountServiceAccountToken") is False, "automountServiceAccountToken must be false"
    assert not any("serviceaccount" in m["mountPath"] for m in c["volumeMounts"]), "phimon must not mount an API token"
    conf = tomllib.loads(named(docs, "ConfigMap", "phimon-config")["data"]["phimon.toml"])
    assert conf["tls"]["ca"].startswith(key_dir + "/"), "[tls] ca comes from the same emptyDir"
    # No RBAC beyond one namespace.
    assert not any(d["kind"] == "ClusterRoleBinding" for d in docs), f"{path}: no ClusterRoleBinding"
    return ds, spec, containers, inits, conf

# The default: cert-manager, a key and CSR per pod, a CertificateRequest.
path = "kubernetes/phimon.yaml"
docs = load(path)
ds, spec, containers, inits, conf = check_daemonset(path, docs)
assert conf["cluster"]["name"] == "prod"
assert "request-cert" in inits, "the init container requesting the certificate"
assert "renew-cert" in containers, "the renewal sidecar"
for name in ["request-cert", "renew-cert"]:
    x = inits.get(name) or containers[name]
    assert any(m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount" for m in x["volumeMounts"]), f"{name} needs the API token"
    tls_rw = [m for m in x["volumeMounts"] if m["mountPath"] == "/run/phimon/tls"]
    assert tls_rw and not tls_rw[0].get("readOnly"), f"{name} writes the TLS directory"
role = named(docs, "Role", "phimon-cert-request")
assert role["metadata"]["namespace"] == "phimon"
assert role["rules"] == [{"apiGroups": ["cert-manager.io"], "resources": ["certificaterequests"], "verbs": ["create", "get"]}], "the Role allows only create/get on certificaterequests"
for rb in [d for d in docs if d["kind"] == "RoleBinding"]:
    assert rb["metadata"]["namespace"] == "phimon"
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "phimon", "namespace": "phimon"}]
cr = named(docs, "ClusterRole", "phimon-cert-request-policy")
assert cr["rules"] == [{"apiGroups": ["policy.cert-manager.io"], "resources": ["certificaterequestpolicies"], "verbs": ["use"], "resourceNames": ["phimon-prod"]}]
assert ds["spec"]["template"]["spec"]["serviceAccountName"] == "phimon"
pol = named(docs, "CertificateRequestPolicy", "phimon-prod")["spec"]
assert pol["allowed"]["uris"]["values"] == ["phimon://prod/*"] and pol["allowed"]["uris"]["required"] is True
assert pol["allowed"]["dnsNames"]["required"] is True
assert sorted(pol["allowed"]["usages"]) == ["client auth", "digital signature", "server auth"]
assert pol["allowed"]["isCA"] is False
assert pol["constraints"]["privateKey"]["algorithm"] == "ECDSA"
assert pol["constraints"]["maxDuration"]
script = named(docs, "ConfigMap", "phimon-cert-request")["data"]["request-cert.sh"]
for needle in ["phimon certs csr", "kind: CertificateRequest", "usages: [digital signature, server auth, client auth]", "ownerReferences"]:
    assert needle in script, f"request-cert.sh lacks {needle!r}"
with tempfile.NamedTemporaryFile("w", suffix=".sh") as f:
    f.write(script); f.flush()
    r = subprocess.run(["sh", "-n", f.name], capture_output=True, text=True)
    assert r.returncode == 0, f"request-cert.sh: {r.stderr}"
print("%s: %d documents ok" % (path, len(docs)))

# SPIFFE/SPIRE: the agent attests the node, spiffe-helper writes the SVID.
path = "kubernetes/phimon-spire.yaml"
docs = load(path)
ds, spec, containers, inits, conf = check_daemonset(path, docs)
sid = named(docs, "ClusterSPIFFEID", "phimon")["spec"]
assert sid["spiffeIDTemplate"] == "spiffe://{{ .TrustDomain }}/phimon/%s/{{ .PodSpec.NodeName }}" % conf["cluster"]["name"], sid["spiffeIDTemplate"]
assert sid["dnsNameTemplates"] == ["{{ .PodSpec.NodeName }}"]
assert sid["podSelector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items(), "ClusterSPIFFEID selects the phimon pods"
helpers = [x for x in list(inits.values()) + list(containers.values()) if "spiffe-helper" in x["image"]]
assert helpers, "spiffe-helper writes the SVID"
assert any(v.get("csi", {}).get("driver") == "csi.spiffe.io" for v in spec["volumes"]), "the Workload API socket comes from the SPIFFE CSI driver"
for d in docs:
    assert d["kind"] not in ("Role", "ClusterRole"), f"{path}: phimon needs no API access under SPIRE"
helper_conf = named(docs, "ConfigMap", "phimon-spiffe-helper")["data"]
for k, v in helper_conf.items():
    assert "cert_dir" in v, k
print("%s: %d documents ok" % (path, len(docs)))
PY

grep -q '^FROM .* AS build' Containerfile && grep -q '^USER ' Containerfile && ! grep -q '^USER root' Containerfile \
  || { echo "Containerfile must be multi-stage and run as a non-root USER"; exit 1; }
echo "Containerfile: multi-stage, non-root ok"
