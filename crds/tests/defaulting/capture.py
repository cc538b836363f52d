#!/usr/bin/env python3
"""Runs every case of cases.json through a real apiserver by server-side dry run, as a bare Pod
and as a Deployment's pod template, and prints what the apiserver returned, as JSON.

    KUBECTL=kubectl python3 capture.py > apiserver-v1.28.7.json

Nothing is created: every request is a dry run (the namespace it uses is made if missing)."""
import json
import os
import subprocess
import sys

KUBECTL = os.environ.get("KUBECTL", "kubectl")
NAMESPACE = os.environ.get("CAPTURE_NAMESPACE", "custody-defaulting")
HERE = os.path.dirname(os.path.abspath(__file__))


def kubectl(*args, stdin=None):
    out = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def dry_run(obj):
    return json.loads(kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                              stdin=json.dumps(obj)))


def main():
    cases = json.load(open(os.path.join(HERE, "cases.json")))["cases"]
    version = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    if subprocess.run([KUBECTL, "get", "namespace", NAMESPACE], capture_output=True).returncode:
        kubectl("create", "namespace", NAMESPACE)
    found = {}
    for name, spec in sorted(cases.items()):
        labels = {"app": name}
        pod = dry_run({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
                       "spec": spec})
        deployment = dry_run({"apiVersion": "apps/v1", "kind": "Deployment",
                              "metadata": {"name": name, "namespace": NAMESPACE},
                              "spec": {"selector": {"matchLabels": labels},
                                       "template": {"metadata": {"labels": labels},
                                                    "spec": spec}}})
        found[name] = {"pod": pod["spec"], "template": deployment["spec"]["template"]}
    json.dump({"server": version, "cases": found}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
