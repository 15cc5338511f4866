#!/usr/bin/env bash
# The smoke test after deploy/kind/up.sh (docs/deploy-kubernetes.md step 6, CI's kind job):
# GET /dramas/1 through the Istio ingress gateway answers 200 with the drama, and its trace
# (the traceresponse header's trace id, or the newest drama-service trace) reaches Jaeger.
set -euo pipefail
port=${GATEWAY_PORT:-18080}
jaeger_port=${JAEGER_PORT:-18686}
kubectl -n istio-ingress port-forward svc/istio-ingressgateway "$port:80" >/dev/null &
forward_gateway=$!
kubectl -n drama-streaming port-forward svc/jaeger "$jaeger_port:16686" >/dev/null &
forward_jaeger=$!
trap 'kill "$forward_gateway" "$forward_jaeger"' EXIT

# The gateway samples 10% of requests: send a few, each must answer 200 with drama 1.
ok=0
for attempt in $(seq 1 60); do
  if body=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/dramas/1" 2>/dev/null); then
    ok=$((ok + 1))
    echo "$body" | python3 -c 'import json, sys; assert json.load(sys.stdin)["id"] == 1'
    [[ $ok -ge 40 ]] && break
  fi
  [[ $attempt -eq 60 ]] && { echo "GET /dramas/1 never answered 200 through the gateway" >&2; exit 1; }
  sleep 1
done
echo "GET /dramas/1 through the gateway: 200 ($ok times)"

# A trace of drama-service reaches Jaeger (the batch exporters flush within seconds).
for attempt in $(seq 1 60); do
  traces=$(curl -fsS "http://127.0.0.1:$jaeger_port/api/traces?service=drama-service&limit=5" \
    | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]))' || echo 0)
  if [[ $traces -gt 0 ]]; then
    echo "Jaeger holds $traces drama-service trace(s)"
    exit 0
  fi
  [[ $attempt -eq 60 ]] && { echo "no drama-service trace reached Jaeger" >&2; exit 1; }
  sleep 2
done
