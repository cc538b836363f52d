#!/usr/bin/env bash
# Renders deploy/custody.yaml from the Helm chart with its default values, so that
# `kubectl apply -f deploy/` installs exactly what `helm install custody charts/custody
# -n custody-system` does. Usage: deploy/render.sh [output-file]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-deploy/custody.yaml}
helm=${HELM:-helm}
{
  echo "# Rendered from charts/custody by deploy/render.sh; do not edit by hand."
  echo "# Install: kubectl apply --server-side -f deploy/custody.yaml"
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: custody-system"
  "$helm" template custody charts/custody --namespace custody-system --include-crds \
    | grep -v '^# Source: ' \
    | sed -e '/helm.sh\/chart:/d' -e 's/app.kubernetes.io\/managed-by: Helm/app.kubernetes.io\/managed-by: kubectl/'
} > "$out"
