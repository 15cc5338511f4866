variable "role_name" {
  description = "Name of the IAM role."
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
  description = "Namespace of the ServiceAccount."
  type        = string
  default     = "drama-streaming"
}

variable "service_account" {
  description = "The one ServiceAccount that may assume the role."
  type        = string
}

variable "secret_arns" {
  description = "The Secrets Manager secrets the role may read, and nothing else."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key the secrets are encrypted with."
  type        = string
}

variable "tags" {
  description = "Tags of the role."
  type        = map(string)
  default     = {}
}
