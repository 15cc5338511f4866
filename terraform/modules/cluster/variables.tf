variable "name" {
  description = "Name of the EKS cluster."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes <major>.<minor> of the control plane and the nodes."
  type        = string
  default     = "1.33"
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the control plane ENIs and the nodes."
  type        = list(string)
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs that may reach the public API endpoint. Empty (the default) keeps the endpoint private: reach it from inside the VPC (VPN, bastion, self-hosted runner)."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.endpoint_public_access_cidrs, "0.0.0.0/0") && !contains(var.endpoint_public_access_cidrs, "::/0")
    error_message = "The public API endpoint must not be open to the whole internet: list your own CIDRs."
  }
}

variable "log_retention_days" {
  description = "Retention of the control plane logs in CloudWatch."
  type        = number
  default     = 365
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "node_min_size" {
  description = "Minimum nodes; three spread the RabbitMQ and service replicas across zones."
  type        = number
  default     = 3

  # k8s/base/rabbitmq runs three brokers with required anti-affinity (one per node): fewer nodes
  # leave a broker Pending and the quorum queues without their third member.
  validation {
    condition     = var.node_min_size >= 3
    error_message = "RabbitMQ runs three brokers, one per node: the node group needs at least three nodes."
  }
}

variable "node_max_size" {
  description = "Maximum nodes."
  type        = number
  default     = 6
}

variable "node_desired_size" {
  description = "Nodes at creation (the node group ignores later changes made by autoscalers)."
  type        = number
  default     = 3

  validation {
    condition     = var.node_desired_size >= 3
    error_message = "RabbitMQ runs three brokers, one per node: start with at least three nodes."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
