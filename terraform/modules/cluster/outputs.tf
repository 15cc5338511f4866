output "cluster_name" {
  description = "Name of the cluster."
  value       = module.eks.cluster_name
}

output "cluster_arn" {
  description = "ARN of the cluster (for eks:DescribeCluster grants)."
  value       = module.eks.cluster_arn
}

output "cluster_endpoint" {
  description = "API server endpoint."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA bundle of the API server."
  value       = module.eks.cluster_certificate_authority_data
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider (the Federated principal of IRSA trusts)."
  value       = module.eks.oidc_provider_arn
}

output "oidc_provider" {
  description = "Issuer of the OIDC provider without https:// (the prefix of the :sub and :aud condition keys)."
  value       = module.eks.oidc_provider
}

output "node_security_group_id" {
  description = "Security group shared by the nodes (and so by the pods)."
  value       = module.eks.node_security_group_id
}

output "ebs_csi_role_arn" {
  description = "IRSA role of the EBS CSI driver's controller."
  value       = aws_iam_role.ebs_csi.arn
}
