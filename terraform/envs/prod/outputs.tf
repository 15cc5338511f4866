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

output "web_ecr_repository_url" {
  description = "ECR repository of the player's image (WEB_IMAGE without its tag)."
  value       = aws_ecr_repository.web.repository_url
}

output "certificate_arn" {
  description = "The ALB's validated ACM certificate (CERTIFICATE_ARN)."
  value       = aws_acm_certificate_validation.edge.certificate_arn
}

output "db_host" {
  description = "RDS PostgreSQL host (DB_HOST)."
  value       = module.database.address
}

output "db_master_secret_arn" {
  description = "RDS-managed master user secret (DB_MASTER_SECRET_ARN), read by the seed Job only."
  value       = module.database.master_secret_arn
}

output "drama_db_secret_arn" {
  description = "drama-service's database secret (DRAMA_DB_SECRET_ARN)."
  value       = module.database.service_secret_arns["drama-service"]
}

output "episode_db_secret_arn" {
  description = "episode-service's database secret (EPISODE_DB_SECRET_ARN)."
  value       = module.database.service_secret_arns["episode-service"]
}

output "drama_service_role_arn" {
  description = "IRSA role of drama-service (DRAMA_SERVICE_ROLE_ARN): reads its database secret."
  value       = module.irsa_db["drama-service"].role_arn
}

output "episode_service_role_arn" {
  description = "IRSA role of episode-service (EPISODE_SERVICE_ROLE_ARN): reads its database secret."
  value       = module.irsa_db["episode-service"].role_arn
}

output "seed_role_arn" {
  description = "IRSA role of the seed Job (SEED_ROLE_ARN): reads the master and both service secrets."
  value       = module.irsa_db["seed"].role_arn
}

output "vpc_cidr" {
  description = "The VPC's CIDR (VPC_CIDR): the pods' NetworkPolicy egress to RDS."
  value       = var.vpc_cidr
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
  description = "The eks overlay's terraform.env (the outputs it needs, one KEY=value line each)."
  value       = <<-EOT
    STREAM_SERVICE_ROLE_ARN=${module.irsa_stream.role_arn}
    MEDIA_BUCKET=${module.media_bucket.bucket_name}
    AWS_REGION=${var.region}
    IMAGE=${aws_ecr_repository.app.repository_url}:${var.image_tag}
    WEB_IMAGE=${aws_ecr_repository.web.repository_url}:${var.image_tag}
    CERTIFICATE_ARN=${aws_acm_certificate_validation.edge.certificate_arn}
    DB_HOST=${module.database.address}
    DB_MASTER_SECRET_ARN=${module.database.master_secret_arn}
    DRAMA_DB_SECRET_ARN=${module.database.service_secret_arns["drama-service"]}
    EPISODE_DB_SECRET_ARN=${module.database.service_secret_arns["episode-service"]}
    DRAMA_SERVICE_ROLE_ARN=${module.irsa_db["drama-service"].role_arn}
    EPISODE_SERVICE_ROLE_ARN=${module.irsa_db["episode-service"].role_arn}
    SEED_ROLE_ARN=${module.irsa_db["seed"].role_arn}
    VPC_CIDR=${var.vpc_cidr}
    EOT
}
