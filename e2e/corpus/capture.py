#!/usr/bin/env python3
"""Records what a real apiserver stores for every workload of the corpus, by server-side dry
run, so the offline tests can check that each manifest's digest is the digest of its stored
form without a cluster.

    KUBECTL=kubectl python3 capture.py > stored-v1.28.7.json

Each project goes to its own namespace (`corpus-<project>`): its ServiceAccounts, ConfigMaps and
the like are created there for real (admission looks them up), every workload is only dry-run.
Needs PyYAML. Prints {"server": version, "workloads": {"<file>#<Kind>/<name>": stored object}},
the stored object without metadata the apiserver generates."""
import json
import os
import subprocess
import sys

import yaml

KUBECTL = os.environ.get("KUBECTL", "kubectl")
HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
GENERATED = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def kubectl(*args, stdin=None, check=True):
    out = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out


def documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def main():
    version = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    index = json.load(open(os.path.join(HERE, "index.json")))
    files = sorted({w["file"] for w in index})
    stored = {}
    for file in files:
        project = file.split("/")[0]
        namespace = f"corpus-{project}"
        kubectl("create", "namespace", namespace, check=False)
        docs = documents(os.path.join(HERE, file))
        for doc in docs:
            doc.setdefault("metadata", {}).pop("namespace", None)
        for doc in docs:
            if doc["kind"] not in WORKLOADS:
                kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc), check=False)
        for doc in docs:
            if doc["kind"] not in WORKLOADS:
                continue
            out = kubectl("create", "-n", namespace, "--dry-run=server", "-o", "json",
                          "-f", "-", stdin=json.dumps(doc))
            obj = json.loads(out.stdout)
            for key in GENERATED:
                obj["metadata"].pop(key, None)
            obj.pop("status", None)
            stored[f"{file}#{doc['kind']}/{doc['metadata']['name']}"] = obj
    json.dump({"server": version, "workloads": stored}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
