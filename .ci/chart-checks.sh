#!/usr/bin/env bash
# Chart and manifest checks: helm lint, renders of several values sets validated against the
# Kubernetes 1.28 and 1.37 schemas, CustodyPolicies validated against the generated CRD schema,
# and drift checks for the chart's CRD copies and deploy/. Needs the tools from .ci/tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .tools/env.sh ] && . .tools/env.sh
for tool in helm kubernetes-validate check-jsonschema; do
  command -v "$tool" >/dev/null || { echo "chart-checks: $tool not found; run .ci/tools.sh" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
problem() { echo "chart-checks: $*" >&2; fail=1; }

echo "--- CRD copies in the chart match crds/generated"
for f in crds/generated/*.yaml; do
  cmp -s "$f" "charts/custody/crds/$(basename "$f")" || problem "charts/custody/crds/$(basename "$f") differs from $f: cp crds/generated/*.yaml charts/custody/crds/"
done

for f in crds/generated/reports/*.yaml; do
  cmp -s "$f" "charts/custody/report-crds/$(basename "$f")" || problem "charts/custody/report-crds/$(basename "$f") differs from $f: cp crds/generated/reports/*.yaml charts/custody/report-crds/"
done

echo "--- helm lint --strict"
helm lint --strict charts/custody >/dev/null || problem "helm lint --strict failed"

# Values sets: name and --set flags.
sets=(
  "default|"
  "cert-manager|--set certificates.certManager.enabled=true"
  "cert-manager-cluster-issuer|--set certificates.certManager.enabled=true --set certificates.certManager.issuerRef.name=corp-ca --set certificates.certManager.issuerRef.kind=ClusterIssuer"
  "permissive|--set webhook.failurePolicy=Ignore --set controller.dryRun=true --set defaultPolicy.mode=Warn --set metrics.serviceMonitor.enabled=true --set webhook.excludeNamespaces={sandbox,legacy}"
  "monitoring|--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true --set metrics.grafanaDashboard.namespace=monitoring"
  "no-default-policy|--set defaultPolicy.enabled=false --set webhook.replicas=3 --set webhook.podDisruptionBudget.enabled=false"
  "external-url|--set webhook.external.url=https://127.0.0.1:8443 --set webhook.external.caBundle=TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PQ== --set certificates.certManager.enabled=true --set webhook.controllerIdentities.serviceAccounts={argo-rollouts/argo-rollouts} --set webhook.controllerIdentities.groups={platform:controllers}"
  "no-match-conditions|--set webhook.matchConditions.enabled=false"
  "backstop|--set backstop.enabled=true --set defaultPolicy.excludeNamespaces={sandbox-*,legacy} --set defaultPolicy.exclude.groups={platform:break-glass}"
  "audit-openreports-crd|--set audit.installReportCRDs=true --set audit.periodSeconds=60"
  "audit-policyreport-crd|--set audit.reports=policyreport --set audit.installReportCRDs=true --set audit.maxResults=200"
  "audit-off|--set audit.enabled=false"
  "failure-policy-by-actor|--set webhook.failurePolicy=Ignore --set webhook.failurePolicyByActor.enabled=true --set defaultPolicy.identities.agents.serviceAccounts={agents/*} --set defaultPolicy.identities.agents.groups={ai-agents} --set defaultPolicy.identities.agents.users={claude-*@acme.dev}"
)
# The Kubernetes kinds kubernetes-validate knows; CRD-defined kinds are checked separately.
for entry in "${sets[@]}"; do
  name=${entry%%|*}
  flags=${entry#*|}
  echo "--- render: $name"
  # shellcheck disable=SC2086
  if ! helm template custody charts/custody -n custody-system --include-crds $flags > "$work/$name.yaml"; then
    problem "helm template failed for $name"
    continue
  fi
  # shellcheck disable=SC2086
  helm lint --strict charts/custody $flags >/dev/null || problem "helm lint --strict failed for $name"
  python3 - "$work/$name.yaml" "$work/$name" <<'PY'
import os, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out + "-core", exist_ok=True)
os.makedirs(out + "-custom", exist_ok=True)
docs = [d for d in open(src).read().split("\n---") if "kind:" in d]
custom = ("CustodyPolicy", "Certificate", "Issuer", "ServiceMonitor", "PrometheusRule")
for i, d in enumerate(docs):
    kind = next((l.split(":", 1)[1].strip() for l in d.splitlines() if l.startswith("kind:")), "")
    target = out + ("-custom" if kind in custom else "-core")
    with open(os.path.join(target, f"{i:03d}-{kind}.yaml"), "w") as f:
        f.write(d.lstrip("-\n") + "\n")
PY
  for version in 1.28.0 1.37.0; do
    kubernetes-validate --strict --quiet -k "$version" "$work/$name-core"/*.yaml \
      || problem "kubernetes-validate --strict -k $version failed for $name"
  done
  for policy in "$work/$name-custom"/*-CustodyPolicy.yaml; do
    [ -e "$policy" ] || continue
    cp "$policy" "$work/policies-$name-$(basename "$policy")"
  done
done

echo "--- backstop: v1beta1 for 1.28, v1 where the cluster serves it"
for version in 1.28.0 1.37.0; do
  api=v1beta1 extra=()
  if [ "$version" = 1.37.0 ]; then api=v1 extra=(--api-versions admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy); fi
  out="$work/backstop-$version.yaml"
  if ! helm template custody charts/custody -n custody-system --set backstop.enabled=true \
      --kube-version "$version" "${extra[@]}" --show-only templates/backstop.yaml > "$out"; then
    problem "helm template failed for the backstop on $version"
    continue
  fi
  grep -q "^apiVersion: admissionregistration.k8s.io/$api$" "$out" || problem "the backstop on $version is not $api"
  kubernetes-validate --strict --quiet -k "$version" "$out" || problem "kubernetes-validate --strict -k $version failed for the backstop"
done

echo "--- CustodyPolicies against the CRD schema"
python3 - crds/generated/custodypolicies.custody.dev.yaml "$work/custodypolicy.schema.json" <<'PY'
import json, sys
try:
    import yaml
except ImportError:
    sys.exit("pyyaml missing")
crd = yaml.safe_load(open(sys.argv[1]))
schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
json.dump(schema, open(sys.argv[2], "w"))
PY
python3 - examples/policy.yaml "$work" <<'PY'
import sys, yaml
for i, d in enumerate(yaml.safe_load_all(open(sys.argv[1]))):
    if d and d.get("kind") == "CustodyPolicy":
        yaml.safe_dump(d, open(f"{sys.argv[2]}/policies-example-{i}.yaml", "w"))
PY
count=$(ls "$work"/policies-*.yaml 2>/dev/null | wc -l)
[ "$count" -gt 0 ] || problem "no CustodyPolicy found to validate"
check-jsonschema --schemafile "$work/custodypolicy.schema.json" "$work"/policies-*.yaml \
  || problem "a CustodyPolicy does not match the CRD schema"

echo "--- the dashboard and alerts use only metrics Custody exports"
python3 - charts/custody/dashboards/custody.json charts/custody/templates/monitoring.yaml \
  webhook/src/server/metrics.rs controller/src/metrics.rs <<'PY' || problem "the dashboard or alerts name a metric Custody does not export"
import json, re, sys
dashboard, rules, *sources = sys.argv[1:]
json.load(open(dashboard))  # valid JSON
exported = set()
for src in sources:
    text = open(src).read()
    for name in re.findall(r'register\(\s*"([a-z_]+)"', text):
        exported |= {f"custody_{name}", f"custody_{name}_total", f"custody_{name}_bucket",
                     f"custody_{name}_sum", f"custody_{name}_count"}
used = set(re.findall(r"custody_[a-z_]+", open(dashboard).read() + open(rules).read()))
used = {u for u in used if not u.startswith("custody_e2e")}
unknown = sorted(used - exported)
if unknown:
    sys.exit(f"unknown metrics: {unknown}")
print(f"ok: {len(used)} metric names, all exported")
PY

echo "--- deploy/ is rendered from the chart"
bash deploy/render.sh "$work/custody.yaml"
cmp -s "$work/custody.yaml" deploy/custody.yaml || problem "deploy/custody.yaml is stale: run deploy/render.sh"

if [ "$fail" -ne 0 ]; then
  echo "chart-checks: FAILED" >&2
  exit 1
fi
echo "chart-checks: ok ($count CustodyPolicies, ${#sets[@]} values sets)"
