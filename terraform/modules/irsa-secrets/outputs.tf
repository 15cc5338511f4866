output "role_arn" {
  description = "ARN of the role (the ServiceAccount's eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.this.arn
}
