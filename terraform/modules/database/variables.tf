variable "name" {
  description = "Name prefix of the database's resources."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (one per zone) for the Multi-AZ instance."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "Security group of the nodes (the pods' ENIs): the only source allowed on 5432."
  type        = string
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m6g.large"
}

variable "allocated_storage_gb" {
  description = "Initial storage; storage autoscaling grows it up to max_allocated_storage_gb."
  type        = number
  default     = 20
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling."
  type        = number
  default     = 200
}

variable "backup_retention_days" {
  description = "Automated backups (point-in-time recovery) kept this many days."
  type        = number
  default     = 14
}

variable "engine_version" {
  description = "PostgreSQL version (compose and the local overlay run postgres:17)."
  type        = string
  default     = "17.6"
}

variable "services" {
  description = "Service name -> its database and owner role (as deploy/postgres/init-databases.sh creates them)."
  type        = map(string)
  default = {
    drama-service   = "drama"
    episode-service = "episode"
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
