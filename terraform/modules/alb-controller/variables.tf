variable "name_prefix" {
  description = "Prefix of the IAM role and policy names (the cluster name)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_provider" {
  description = "Issuer of the cluster's OIDC provider without https://."
  type        = string
}

variable "namespace" {
  description = "Namespace the controller runs in."
  type        = string
  default     = "kube-system"
}

variable "service_account" {
  description = "ServiceAccount of the controller (the Helm release creates it with this name)."
  type        = string
  default     = "aws-load-balancer-controller"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
