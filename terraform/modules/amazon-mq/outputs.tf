output "amqps_endpoint" {
  description = "The broker's AMQPS endpoint, without credentials."
  value       = aws_mq_broker.this.instances[0].endpoints[0]
}

output "credentials_secret_arn" {
  description = "Secrets Manager secret holding username, password and AMQP_URL."
  value       = aws_secretsmanager_secret.admin.arn
}
