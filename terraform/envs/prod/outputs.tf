output "region" {
  description = "AWS region (AWS_REGION)."
  value       = var.region
}

output "cluster_name" {
  description = "EKS cluster name, for aws eks update-kubeconfig."
  value       = module.cluster.cluster_name
}

output "stream_service_role_arn" {
  description = "IRSA role of stream-service (STREAM_SERVICE_ROLE_ARN: its ServiceAccount's eks.amazonaws.com/role-arn)."
  value       = module.irsa_stream.role_arn
}

output "media_bucket_name" {
  description = "Media bucket (MEDIA_BUCKET)."
  value       = module.media_bucket.bucket_name
}

output "ecr_repository_url" {
  description = "ECR repository of the image (IMAGE without its tag)."
  value       = aws_ecr_repository.app.repository_url
}

output "certificate_arn" {
  description = "The ALB's validated ACM certificate (CERTIFICATE_ARN)."
  value       = aws_acm_certificate_validation.edge.certificate_arn
}

output "github_push_role_arn" {
  description = "Role release.yml pushes the image with (repository variable AWS_PUSH_ROLE_ARN, set by Terraform)."
  value       = aws_iam_role.github_push.arn
}

output "github_deploy_role_arn" {
  description = "Role deploy.yml deploys with (production environment variable AWS_DEPLOY_ROLE_ARN, set by Terraform)."
  value       = aws_iam_role.github_deploy.arn
}

# k8s/overlays/eks/terraform.env, exactly: each line is one of the outputs above.
#   terraform output -raw eks_overlay_env > k8s/overlays/eks/terraform.env
output "eks_overlay_env" {
  description = "The eks overlay's terraform.env (STREAM_SERVICE_ROLE_ARN, MEDIA_BUCKET, AWS_REGION, IMAGE, CERTIFICATE_ARN)."
  value       = <<-EOT
    STREAM_SERVICE_ROLE_ARN=${module.irsa_stream.role_arn}
    MEDIA_BUCKET=${module.media_bucket.bucket_name}
    AWS_REGION=${var.region}
    IMAGE=${aws_ecr_repository.app.repository_url}:${var.image_tag}
    CERTIFICATE_ARN=${aws_acm_certificate_validation.edge.certificate_arn}
    EOT
}
