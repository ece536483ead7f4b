#!/usr/bin/env python3
"""Removes the finalizers of every object of one namespaced resource, in parallel:

    unfinalize.py KUBECONFIG NAMESPACE API-PATH PLURAL

e.g. `unfinalize.py $KUBECONFIG ns1 apis/ferry.dev/v1alpha1 applications`. A bench that leaves
10,000 Applications behind would otherwise wait for one `kubectl patch` process per object (about
0.1 s of CPU each) before its namespace can go. Uses the kubeconfig's first cluster and user
(client certificate data, as tests/testenv writes it).
"""
import base64
import concurrent.futures
import http.client
import json
import os
import ssl
import sys
import tempfile
import threading

import yaml


def context(kubeconfig):
    with open(kubeconfig) as f:
        cfg = yaml.safe_load(f)
    cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    tmp = tempfile.mkdtemp()
    paths = {}
    for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
        paths[key] = os.path.join(tmp, key)
        with open(paths[key], "wb") as f:
            f.write(base64.b64decode(user.get(key) or cluster[key]))
    ctx = ssl.create_default_context(cafile=paths["certificate-authority-data"])
    ctx.load_cert_chain(paths["client-certificate-data"], paths["client-key-data"])
    host, port = cluster["server"].removeprefix("https://").split(":")
    return ctx, host, int(port)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    kubeconfig, ns, api, plural = sys.argv[1:]
    ctx, host, port = context(kubeconfig)
    local = threading.local()

    def request(method, path, body=None, content_type=None):
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=60)
        headers = {"Content-Type": content_type} if content_type else {}
        local.conn.request(method, path, body=body, headers=headers)
        resp = local.conn.getresponse()
        return resp.status, resp.read()

    base = f"/{api}/namespaces/{ns}/{plural}"
    status, body = request("GET", base)
    if status == 404:
        return
    if status != 200:
        sys.exit(f"GET {base}: {status} {body[:200]!r}")
    names = [i["metadata"]["name"] for i in json.loads(body)["items"] if i["metadata"].get("finalizers")]
    patch = json.dumps({"metadata": {"finalizers": None}})

    def unfinalize(name):
        status, body = request("PATCH", f"{base}/{name}", patch, "application/merge-patch+json")
        if status not in (200, 404):
            raise RuntimeError(f"PATCH {name}: {status} {body[:200]!r}")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(unfinalize, names))


if __name__ == "__main__":
    main()
