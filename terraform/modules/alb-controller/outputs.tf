output "role_arn" {
  description = "ARN for the controller's ServiceAccount annotation."
  value       = aws_iam_role.controller.arn
}

output "namespace" {
  description = "Namespace of the controller."
  value       = var.namespace
}

output "service_account" {
  description = "ServiceAccount of the controller."
  value       = var.service_account
}
