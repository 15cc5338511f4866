output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets: nodes, pods, Amazon MQ."
  value       = module.vpc.private_subnets
}

output "public_subnet_ids" {
  description = "Public subnets: the internet-facing ALB and the NAT gateways."
  value       = module.vpc.public_subnets
}
