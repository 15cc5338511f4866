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
  description = "Namespace of stream-service's ServiceAccount."
  type        = string
  default     = "drama-streaming"
}

variable "service_account" {
  description = "Name of stream-service's ServiceAccount."
  type        = string
  default     = "stream-service"
}

variable "bucket_arn" {
  description = "ARN of the media bucket; the role reads its objects and nothing else."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
