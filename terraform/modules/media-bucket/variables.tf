variable "name" {
  description = "Globally unique name of the media bucket."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
  default     = 30
}

variable "access_log_bucket" {
  description = "Existing bucket for S3 server access logs; null disables access logging."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "cors_allowed_origins" {
  description = "Origins (https://host[:port], no path) whose pages may read the bucket's pre-signed objects: the player's. Empty: no CORS rule."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for origin in var.cors_allowed_origins : can(regex("^https://[a-z0-9.-]+(:[0-9]+)?$", origin))])
    error_message = "Each origin is https://host or https://host:port, lower case, no path, no wildcard."
  }
}
