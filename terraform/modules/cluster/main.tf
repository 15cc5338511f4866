# The EKS cluster: API endpoint private, or public only from the CIDRs given; every control plane
# log type; Kubernetes Secrets envelope-encrypted with a KMS key the module creates (rotation on);
# the IAM OIDC provider for IRSA; one managed node group in the private subnets; the EBS CSI
# driver with its own IRSA role.
module "eks" {
  #checkov:skip=CKV_TF_1:a registry module pinned by version constraint (the registry has no commit-hash syntax); .terraform.lock.hcl pins the providers.
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  vpc_id     = var.vpc_id
  subnet_ids = var.private_subnet_ids

  endpoint_private_access      = true
  endpoint_public_access       = length(var.endpoint_public_access_cidrs) > 0
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  enabled_log_types                      = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = var.log_retention_days

  create_kms_key          = true
  enable_kms_key_rotation = true
  encryption_config = {
    resources = ["secrets"]
  }

  enable_irsa = true

  # Access entries only (no aws-auth ConfigMap); whoever runs `terraform apply` is admin, so the
  # Helm releases below can be installed by the same identity.
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true

  addons = {
    coredns    = {}
    kube-proxy = {}
    # Network policy enforcement on (the VPC CNI's network policy agent): without it the
    # namespace's default-deny and allow-list NetworkPolicies (k8s/base/network-policies.yaml)
    # are accepted by the API server and enforced by nothing.
    vpc-cni = {
      before_compute = true
      configuration_values = jsonencode({
        enableNetworkPolicy = "true"
      })
    }
    # PersistentVolumes for the RabbitMQ brokers (the addons module's default gp3 StorageClass).
    aws-ebs-csi-driver = {
      service_account_role_arn = aws_iam_role.ebs_csi.arn
    }
  }

  node_security_group_additional_rules = {
    # istiod's sidecar injector and config validation webhooks: the API server calls istiod on
    # 15017. The module already opens 4443/6443/8443/9443/10250 (KEDA, ALB controller, kubelet).
    ingress_istiod_webhook = {
      description                   = "Control plane to istiod webhooks"
      protocol                      = "tcp"
      from_port                     = 15017
      to_port                       = 15017
      type                          = "ingress"
      source_cluster_security_group = true
    }
    # Pod to pod across nodes: Envoy sidecars to istiod (xDS 15012), the ALB and Prometheus to
    # the gateway's and sidecars' health/metrics ports (15021, 15020, 15090), mTLS between the
    # services, RabbitMQ clustering (4369, 25672), Prometheus scrapes. The module's shared node
    # group opens none of these by itself (its docs call this rule out as needed for meshes).
    ingress_self_all = {
      description = "Node to node, all ports (pod network, mesh, broker clustering)"
      protocol    = "-1"
      from_port   = 0
      to_port     = 0
      type        = "ingress"
      self        = true
    }
  }

  eks_managed_node_groups = {
    default = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.node_instance_types
      min_size       = var.node_min_size
      max_size       = var.node_max_size
      desired_size   = var.node_desired_size
      subnet_ids     = var.private_subnet_ids
    }
  }

  tags = var.tags
}

data "aws_partition" "current" {}

# IRSA for the EBS CSI driver's controller (the add-on's ServiceAccount in kube-system), pinned on
# :sub and :aud; AWS's managed policy for the driver, nothing else. The volumes are encrypted with
# the account's aws/ebs key, which that policy covers.
data "aws_iam_policy_document" "ebs_csi_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = ["system:serviceaccount:kube-system:ebs-csi-controller-sa"]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ebs_csi" {
  name               = "${var.name}-ebs-csi-driver"
  assume_role_policy = data.aws_iam_policy_document.ebs_csi_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}
