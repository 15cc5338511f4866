variable "name" {
  description = "Name of the broker."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the broker."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the broker (a cluster broker spreads over them)."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "Security group of the clients (the EKS nodes) allowed to reach 5671."
  type        = string
}

variable "engine_version" {
  description = "RabbitMQ version offered by Amazon MQ."
  type        = string
  default     = "3.13"
}

variable "instance_type" {
  description = "Broker instance type (cluster deployments need mq.m5.large or larger)."
  type        = string
  default     = "mq.m5.large"
}

variable "admin_username" {
  description = "Name of the broker's admin user."
  type        = string
  default     = "drama-admin"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
