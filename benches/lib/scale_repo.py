#!/usr/bin/env python3
"""Writes the working tree of a scale bench's repository (benches/scale.sh): fast, since bash
heredocs for 10,000 files take minutes.

  scale_repo.py shape N DIR       N apps, apps/app-NNNN/, each Flux's benchmark app: a Deployment
                                  with replicas 0, a ServiceAccount, a Service and an Ingress
  scale_repo.py configmaps N DIR  N apps, apps/cm-NNNNN/, each one ConfigMap (Argo CD's
                                  scalability test's shape)
  scale_repo.py objects N DIR     one app of N objects under objects/, 100 per file: 80%
                                  ConfigMaps, 10% Services, 10% ServiceAccounts (no object waits
                                  for a controller, so the floor is the API server's and kubectl's)
"""
import os
import sys


def shape_app(name):
    return f"""---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {name}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: 0
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      serviceAccountName: {name}
      containers:
      - name: app
        image: ghcr.io/stefanprodan/podinfo:6.5.3
        ports: [{{containerPort: 9898, name: http}}]
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
spec:
  rules:
  - host: {name}.bench.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {{name: {name}, port: {{number: 9898}}}}
"""


def configmap(name):
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  greeting: hello from {name}
"""


def one_object(i):
    if i % 10 == 8:
        return f"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\nspec:\n  selector: {{app: a-{i}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
    if i % 10 == 9:
        return f"---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa-{i}\n"
    return f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg-{i}\n  labels: {{tier: bench}}\ndata:\n  greeting: hello {i}\n  settings.json: '{{\"index\": {i}}}'\n"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("shape", "configmaps", "objects"):
        sys.exit(__doc__)
    what, n, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if what == "shape":
        for a in range(n):
            write(f"{root}/apps/app-{a:04d}/app.yaml", shape_app(f"app-{a:04d}"))
    elif what == "configmaps":
        for a in range(n):
            write(f"{root}/apps/cm-{a:05d}/configmap.yaml", configmap(f"cm-{a:05d}"))
    else:
        for f in range(0, n, 100):
            write(f"{root}/objects/objects-{f // 100:04d}.yaml",
                  "".join(one_object(i) for i in range(f, min(n, f + 100))))


if __name__ == "__main__":
    main()
