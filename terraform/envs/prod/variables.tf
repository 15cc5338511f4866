variable "region" {
  description = "AWS region of everything (AWS_REGION in the eks overlay)."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name of the stack: the cluster, the VPC and the prefix of the IAM roles."
  type        = string
  default     = "drama-streaming"
}

variable "azs" {
  description = "Availability zones (three: RabbitMQ and the services spread over zones)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

variable "vpc_cidr" {
  description = "CIDR of the VPC."
  type        = string
  default     = "10.20.0.0/16"
}

variable "kubernetes_version" {
  description = "Kubernetes version of the cluster."
  type        = string
  default     = "1.33"
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public API endpoint (your office or VPN egress, e.g. [\"203.0.113.7/32\"]); empty keeps the endpoint private."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Instance types of the node group."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "media_bucket_name" {
  description = "Name of the media bucket; null gives drama-streaming-media-<account id>."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Image tag the eks_overlay_env output names (CI deploys the commit SHA it built)."
  type        = string
  default     = "0.1.0"
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose workflows may push images and deploy."
  type        = string
}

variable "github_environment" {
  description = "GitHub environment of the deploy job (Terraform sets its required reviewers and main-only policy)."
  type        = string
  default     = "production"
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider (false when it exists already: one per account)."
  type        = bool
  default     = true
}

variable "deploy_access_policy_arn" {
  description = "EKS access policy of the deploy role, cluster-wide: kubectl apply -k creates the namespace and Istio, KEDA, RabbitMQ and Prometheus custom resources, which the namespaced Edit/Admin policies do not cover."
  type        = string
  default     = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "domain_name" {
  description = "Public name of the site: the player at / and the API (the ALB's HTTPS certificate, the media bucket's CORS origin), e.g. drama.example.com."
  type        = string
}

variable "hosted_zone_id" {
  description = "Route 53 hosted zone of domain_name, where the certificate's DNS validation records go."
  type        = string
}

variable "production_reviewer_user_ids" {
  description = "GitHub user ids (numbers: gh api users/<login> --jq .id) who may approve a production deploy."
  type        = list(number)
  default     = []
}

variable "production_reviewer_team_ids" {
  description = "GitHub team ids who may approve a production deploy."
  type        = list(number)
  default     = []

  validation {
    condition     = length(var.production_reviewer_team_ids) + length(var.production_reviewer_user_ids) > 0
    error_message = "Name at least one production reviewer (production_reviewer_user_ids or production_reviewer_team_ids)."
  }
}
