# The VPC: public subnets for the ALB, private subnets for the nodes (and Amazon MQ), NAT for
# egress. The subnet tags are how the AWS Load Balancer Controller discovers where to put
# internet-facing (elb) and internal (internal-elb) load balancers.
module "vpc" {
  #checkov:skip=CKV_TF_1:a registry module pinned by version constraint (the registry has no commit-hash syntax); .terraform.lock.hcl pins the providers.
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 6.0"

  name = var.name
  cidr = var.cidr
  azs  = var.azs

  private_subnets = [for index, _ in var.azs : cidrsubnet(var.cidr, 4, index)]
  public_subnets  = [for index, _ in var.azs : cidrsubnet(var.cidr, 8, 240 + index)]

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway
  enable_dns_hostnames   = true
  enable_dns_support     = true

  # The default security group of the VPC is left with no rules: nothing should use it.
  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = var.flow_log_retention_days

  public_subnet_tags = {
    "kubernetes.io/role/elb" = "1"
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = "1"
  }

  tags = var.tags
}
