#!/usr/bin/env python3
"""What one request of a new Application's first sync costs the control plane (scale.sh, D):

    api_cost.py KUBECONFIG NAMESPACE COUNT ROUNDS PID...

In NAMESPACE (fresh, no ferry running), COUNT Applications are created, then each gets, one
kind of request at a time, what ferry sends for a one-ConfigMap Application's first sync: the
finalizer patch (the JSON patch kube's finalizer helper sends), the ConfigMap's server-side
apply (a create: a fresh name each round), the status's server-side apply (as big as ferry's for
that Application), and the Event.
Each kind runs ROUNDS times over the COUNT objects (a fresh value each round, so every request
writes) from 8 connections; the control plane's CPU (utime + stime of the PIDs: kube-apiserver
and etcd) is read before and after each batch. Prints one line per batch: `cost-<kind> <ms of
control-plane CPU per request>`, with kinds create, finalizer, configmap, status and event.
Application creates are measured in their own rounds (fresh names each round). Where the
namespace has the chart's cleanup-finalizer policy, the creates include it: scale.sh runs this
in a namespace without it and in one with it (kinds create and create-policy).

Nothing here is ferry: it measures the API server's price of the requests ferry makes, to say
what bounds a fleet's first sync on this machine.
"""
import concurrent.futures
import http.client
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unfinalize import context  # noqa: E402  (the kubeconfig's client certificate)

REVISION = "main@sha1:c53988ce907e4c5de66920da4b9bcea8b752e550"
TIME = "2026-12-07T05:26:28Z"


def cpu_seconds(pids):
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def status(ns, name, round_):
    """A status as ferry writes it after the first sync of a one-ConfigMap Application."""
    return {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                        "message": f"main@c53988c: 1 object synced and healthy ({round_})",
                        "observedGeneration": 1, "lastTransitionTime": TIME}],
        "health": {"status": "Healthy"},
        "history": [{"revision": REVISION, "result": "Succeeded", "message": "applied 1, pruned 0",
                     "startedAt": TIME, "finishedAt": TIME}],
        "inventory": [{"group": "", "version": "v1", "kind": "ConfigMap", "namespace": ns, "name": name}],
        "lastAppliedRevision": REVISION, "lastAttemptedRevision": REVISION, "verifiedRevision": REVISION,
        "sync": {"revision": REVISION, "shortRevision": "main@c53988c", "status": "Synced"},
    }


def request_for(kind, ns, name, round_):
    """(method, path, body, content type) of one request of KIND about Application NAME."""
    apps = f"/apis/ferry.dev/v1alpha1/namespaces/{ns}/applications"
    apply = "application/apply-patch+yaml"
    if kind in ("create", "create-policy"):
        app = {"apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
               "metadata": {"name": f"{name}-r{round_}", "namespace": ns},
               "spec": {"source": {"repoURL": "http://127.0.0.1:1/configmaps.git", "ref": {"branch": "main"},
                                   "path": f"apps/{name}"},
                        "destination": {"namespace": ns}, "interval": "1h",
                        "syncPolicy": {"automated": True, "prune": True, "selfHeal": True}}}
        return "POST", apps, app, "application/json"
    if kind == "finalizer":
        # Removed and added again each round (a JSON patch, as kube's finalizer helper sends).
        value = ["ferry.dev/cleanup"] if round_ % 2 else None
        ops = [{"op": "add" if value else "remove", "path": "/metadata/finalizers", **({"value": value} if value else {})}]
        return "PATCH", f"{apps}/{name}", ops, "application/json-patch+json"
    if kind == "configmap":
        # A fresh name each round: ferry's first sync creates the ConfigMap.
        name = f"{name}-r{round_}"
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": name, "namespace": ns,
                           "labels": {"app.kubernetes.io/managed-by": "ferry", "ferry.dev/app-name": name,
                                      "ferry.dev/app-namespace": ns}},
              "data": {"index": f"{name} {round_}"}}
        return "PATCH", f"/api/v1/namespaces/{ns}/configmaps/{name}?fieldManager=ferry&force=true", cm, apply
    if kind == "status":
        body = {"apiVersion": "ferry.dev/v1alpha1", "kind": "Application", "status": status(ns, name, round_)}
        return "PATCH", f"{apps}/{name}/status?fieldManager=ferry&force=true", body, apply
    if kind == "event":
        event = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                 "metadata": {"name": f"{name}.r{round_}", "namespace": ns},
                 "eventTime": "2026-12-07T05:26:28.000000Z", "reportingController": "ferry",
                 "reportingInstance": "ferry-bench", "action": "Sync", "reason": "Synced", "type": "Normal",
                 "note": f"applied 1 object at main@c53988c: ConfigMap/{name}",
                 "regarding": {"apiVersion": "ferry.dev/v1alpha1", "kind": "Application", "namespace": ns,
                               "name": name}}
        return "POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", event, "application/json"
    raise ValueError(kind)


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    kubeconfig, ns, count, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pids = sys.argv[5:]
    ctx, host, port = context(kubeconfig)
    local = threading.local()

    def send(method, path, body, content_type):
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=60)
        local.conn.request(method, path, body=json.dumps(body), headers={"Content-Type": content_type})
        resp = local.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")

    names = [f"cost-{i:05d}" for i in range(count)]

    def batch(kind, round_, targets):
        before = cpu_seconds(pids)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: send(*request_for(kind, ns, n, round_)), targets))
        ms = (cpu_seconds(pids) - before) * 1000 / len(targets)
        print(f"cost-{kind}\t{ms:.3f}", flush=True)

    create_kind = "create-policy" if os.environ.get("FERRY_COST_POLICY") == "1" else "create"
    # The objects the other kinds write: COUNT Applications (created once, unmeasured, round 0
    # names are renamed below) and their ConfigMaps.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: send(*request_for("create", ns, n, 0)), names))
    names = [f"{n}-r0" for n in names]
    for r in range(1, rounds + 1):
        batch(create_kind, r, [f"cost-{i:05d}" for i in range(count)])
    if create_kind == "create-policy":
        return
    for kind in ("finalizer", "configmap", "status", "event"):
        for r in range(1, rounds + 1):
            batch(kind, r, names)


if __name__ == "__main__":
    main()
