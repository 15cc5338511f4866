output "gateway_namespace" {
  description = "Namespace of the Istio ingress gateway."
  value       = helm_release.istio_ingressgateway.namespace
}

output "monitoring_namespace" {
  description = "Namespace of Prometheus and Grafana."
  value       = helm_release.kube_prometheus_stack.namespace
}
