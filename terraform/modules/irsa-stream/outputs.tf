output "role_arn" {
  description = "ARN for the eks.amazonaws.com/role-arn annotation of stream-service's ServiceAccount."
  value       = aws_iam_role.stream_service.arn
}
