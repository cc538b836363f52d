#!/usr/bin/env bash
# Runs the e2e suite against the lab: a real Kubernetes 1.28.7 control plane with simulated
# nodes, built once per machine into $LAB (default $HOME/k8s-lab; see docs/testing.md).
# Starts the lab when it is not running and stops it afterwards (only then: a lab that was
# already up is left up). Without a built lab it prints one loud SKIPPED line and exits 0.
#
# Custody runs as local processes under the chart's service accounts; the chart's webhooks are
# registered by url on 127.0.0.1, never by Service (nothing routes cluster IPs on the lab).
set -euo pipefail
cd "$(dirname "$0")/.."
LAB="${LAB:-$HOME/k8s-lab}"
LAB="$(cd "$LAB" 2>/dev/null && pwd || echo "$LAB")"

if [ ! -x "$LAB/bin/kube-apiserver" ] || [ ! -x "$LAB/bin/kwok" ] || [ ! -f "$LAB/scripts/up.sh" ]; then
  echo "SKIPPED: e2e on the lab: no lab built in $LAB (build it once with the lab's build.sh; see docs/testing.md)" >&2
  exit 0
fi

if [ ! -x .tools/bin/helm ]; then
  bash .ci/tools.sh
fi

echo "==> building the binaries the e2e runs"
# The same feature set as `cargo test --workspace`, so nothing is compiled twice (CI disks are small).
cargo build --locked --workspace --bins --tests

# One lab user at a time, from starting the lab to stopping it: a run that finds the lab up must
# not have it stopped under it by the run that started it. The controller benchmark on the lab
# takes the same lock. Children get fd 9 closed (`9>&-`), so no lab daemon keeps the lock.
exec 9>/tmp/custody-lab.lock
if ! flock -n 9; then
  echo "==> waiting for another lab run to finish (/tmp/custody-lab.lock)"
  flock 9
fi

export KUBECONFIG="$LAB/kubeconfig"
KUBECTL="$LAB/bin/kubectl"
started=0
stop_lab() {
  if [ "$started" = 1 ]; then
    echo "==> stopping the lab this run started"
    LAB="$LAB" bash "$LAB/scripts/down.sh" 9>&- || true
  fi
}
trap stop_lab EXIT

if ! "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  echo "==> starting the lab in $LAB"
  started=1
  LAB="$LAB" setsid -w bash "$LAB/scripts/up.sh" </dev/null 9>&-
fi
"$KUBECTL" get --raw /readyz >/dev/null

echo "==> e2e on the lab (Kubernetes $("$KUBECTL" version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1))"
CUSTODY_E2E_KUBECONFIG="$LAB/kubeconfig" \
CUSTODY_E2E_MODE=local \
CUSTODY_E2E_LAB="$LAB" \
CUSTODY_E2E_BROKEN=annotation \
CUSTODY_E2E_BROKEN_ANNOTATIONS='{"kwok.lab/health":"not-ready"}' \
CUSTODY_E2E_REVERT_WINDOW="${CUSTODY_E2E_REVERT_WINDOW:-90}" \
KUBECTL="$KUBECTL" \
  cargo test --locked --workspace --test e2e --test backstop -- --nocapture 9>&-
