# Sourced by the benchmarks: the objects of a benchmark Application.
# shellcheck shell=bash

# n objects, 10 per file: every tenth a Deployment (replicas 1), the rest ConfigMaps. Names are
# cfg-<i> and app-<i>, after PREFIX if given (several apps sharing one namespace).
generate() { # n dir [prefix]
  local n="$1" dir="$2" p="${3:-}" i file
  mkdir -p "$dir"
  for ((i = 0; i < n; i++)); do
    file="$dir/objects-$(printf '%04d' $((i / 10))).yaml"
    if ((i % 10 == 9)); then
      cat >>"$file" <<EOF
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${p}app-$i
  labels: {app: ${p}app-$i, tier: bench}
spec:
  replicas: 1
  selector:
    matchLabels: {app: ${p}app-$i}
  template:
    metadata:
      labels: {app: ${p}app-$i, tier: bench}
    spec:
      containers:
      - name: app
        image: registry.example/bench/app-$i:1.0.$i
        ports: [{containerPort: 8080}]
        env: [{name: MODE, value: bench}]
        envFrom: [{configMapRef: {name: ${p}cfg-$((i - 1))}}]
EOF
    else
      cat >>"$file" <<EOF
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: ${p}cfg-$i
  labels: {tier: bench}
data:
  greeting: hello $i
  settings.json: '{"replicas": 1, "index": $i}'
EOF
    fi
  done
}
