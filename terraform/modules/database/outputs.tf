output "address" {
  description = "Host name of the instance (its Multi-AZ endpoint follows failover)."
  value       = aws_db_instance.db.address
}

output "master_secret_arn" {
  description = "The RDS-managed secret of the master user (username, password), for the seed Job."
  value       = aws_db_instance.db.master_user_secret[0].secret_arn
}

output "service_secret_arns" {
  description = "Service name -> ARN of its secret (username, password, DATABASE_URL)."
  value       = { for name, secret in aws_secretsmanager_secret.service : name => secret.arn }
}

output "kms_key_arn" {
  description = "KMS key of the instance and the secrets (readers need kms:Decrypt)."
  value       = aws_kms_key.db.arn
}
