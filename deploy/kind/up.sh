#!/usr/bin/env bash
# The kind deploy of docs/deploy-kubernetes.md, step by step, as CI's kind job runs it: a cluster,
# the image loaded onto it, Istio (with istio-cni: the namespace enforces Pod Security
# "restricted"), kube-prometheus-stack, KEDA, cert-manager, the RabbitMQ operators, the Secrets,
# k8s/overlays/local, then every Deployment and the seed Job waited for.
#   deploy/kind/up.sh [cluster-name]     (needs docker, kind, kubectl, helm)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/kind/versions.env
source deploy/kind/versions.env
cluster=${1:-drama-streaming}
values=terraform/modules/addons/values

# 1. Cluster and image
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 5m
docker build -t drama-streaming:0.1.0 .
docker build --target seed -t drama-streaming-seed:0.1.0 .   # stream's seed: plus ffmpeg
docker build -t drama-streaming-web:0.1.0 web        # the player (web/Dockerfile)
kind load docker-image drama-streaming:0.1.0 --name "$cluster"
kind load docker-image drama-streaming-seed:0.1.0 --name "$cluster"
kind load docker-image drama-streaming-web:0.1.0 --name "$cluster"

# 2. Istio: CRDs, the CNI node agent, istiod with the Jaeger provider, the ingress gateway
helm repo add istio https://istio-release.storage.googleapis.com/charts --force-update
helm upgrade --install istio-base istio/base -n istio-system --create-namespace \
  --version "$ISTIO_VERSION" --wait
helm upgrade --install istio-cni istio/cni -n istio-system --version "$ISTIO_VERSION" \
  --set profile=default --wait
helm upgrade --install istiod istio/istiod -n istio-system --version "$ISTIO_VERSION" \
  -f "$values/istiod.yaml" --wait
helm upgrade --install istio-ingressgateway istio/gateway -n istio-ingress --create-namespace \
  --version "$ISTIO_VERSION" --set service.type=ClusterIP --wait

# 3. Prometheus, Grafana, KEDA
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
helm repo add kedacore https://kedacore.github.io/charts --force-update
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  -n monitoring --create-namespace --version "$KUBE_PROMETHEUS_STACK_CHART_VERSION" \
  -f "$values/kube-prometheus-stack.yaml" --wait --timeout 10m
helm upgrade --install keda kedacore/keda -n keda --create-namespace \
  --version "$KEDA_CHART_VERSION" --wait

# 4. cert-manager, then the RabbitMQ operators (the topology operator's webhook needs it)
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=5m
kubectl apply -f "https://github.com/rabbitmq/cluster-operator/releases/download/$RABBITMQ_CLUSTER_OPERATOR_VERSION/cluster-operator.yml"
kubectl apply -f "https://github.com/rabbitmq/messaging-topology-operator/releases/download/$RABBITMQ_TOPOLOGY_OPERATOR_VERSION/messaging-topology-operator-with-certmanager.yaml"
kubectl -n rabbitmq-system wait --for=condition=Available deployment --all --timeout=5m

# 5. Secrets, then the application
k8s/create-secrets.sh --local
kubectl -n drama-streaming delete job seed --ignore-not-found   # its pod template is immutable
kubectl apply -k k8s/overlays/local
kubectl -n drama-streaming wait --for=condition=Ready certificate --all --timeout=5m
kubectl -n drama-streaming wait --for=condition=complete job/seed --timeout=10m
kubectl -n drama-streaming wait --for=condition=Available deployment --all --timeout=10m
