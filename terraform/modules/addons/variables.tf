variable "cluster_name" {
  description = "Name of the EKS cluster (the ALB controller tags what it creates with it)."
  type        = string
}

variable "region" {
  description = "AWS region of the cluster."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster (saves the ALB controller an IMDS lookup)."
  type        = string
}

variable "alb_controller_role_arn" {
  description = "IRSA role of the AWS Load Balancer Controller."
  type        = string
}

variable "alb_controller_namespace" {
  description = "Namespace of the AWS Load Balancer Controller."
  type        = string
  default     = "kube-system"
}

variable "alb_controller_service_account" {
  description = "ServiceAccount of the AWS Load Balancer Controller (its IRSA trust names it)."
  type        = string
  default     = "aws-load-balancer-controller"
}

variable "istio_namespace" {
  description = "Namespace of Istio's control plane."
  type        = string
  default     = "istio-system"
}

variable "gateway_namespace" {
  description = "Namespace of the Istio ingress gateway (the ALB Ingress of the eks overlay points at it)."
  type        = string
  default     = "istio-ingress"
}

variable "monitoring_namespace" {
  description = "Namespace of kube-prometheus-stack."
  type        = string
  default     = "monitoring"
}

variable "chart_versions" {
  description = "Pinned chart versions; upgrade deliberately, one release at a time."
  type = object({
    aws_load_balancer_controller   = string
    istio                          = string
    kube_prometheus_stack          = string
    keda                           = string
    cert_manager                   = string
    secrets_store_csi_provider_aws = string
  })
  default = {
    aws_load_balancer_controller   = "1.13.4"
    istio                          = "1.27.1"
    kube_prometheus_stack          = "77.6.2"
    keda                           = "2.17.2"
    cert_manager                   = "1.19.1" # chart v1.19.1; deploy/kind/versions.env names the same
    secrets_store_csi_provider_aws = "3.1.1"
  }
}

variable "rabbitmq_operator_versions" {
  description = "Upstream release tags of the RabbitMQ operators (deploy/kind/versions.env names the same; ../shared/crds holds their CRDs)."
  type = object({
    cluster  = string
    topology = string
  })
  default = {
    cluster  = "v2.22.3"
    topology = "v1.20.1"
  }
}

variable "csi_namespace" {
  description = "Namespace of the Secrets Store CSI driver and its AWS provider (node agents)."
  type        = string
  default     = "kube-system"
}
