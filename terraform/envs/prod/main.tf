data "aws_caller_identity" "current" {}

locals {
  tags = merge({ Project = "drama-streaming", Environment = "prod", ManagedBy = "terraform" }, var.tags)

  media_bucket_name = coalesce(var.media_bucket_name, "drama-streaming-media-${data.aws_caller_identity.current.account_id}")

  # Where stream-service runs (k8s/: namespace drama-streaming, ServiceAccount stream-service).
  app_namespace          = "drama-streaming"
  stream_service_account = "stream-service"

  # ServiceAccount -> the database secrets it may read (each service its own; the seed all).
  db_readers = {
    drama-service   = [module.database.service_secret_arns["drama-service"]]
    episode-service = [module.database.service_secret_arns["episode-service"]]
    seed = [
      module.database.master_secret_arn,
      module.database.service_secret_arns["drama-service"],
      module.database.service_secret_arns["episode-service"],
    ]
  }
}

module "network" {
  source = "../../modules/network"

  name = var.name
  cidr = var.vpc_cidr
  azs  = var.azs
  tags = local.tags
}

module "cluster" {
  source = "../../modules/cluster"

  name                         = var.name
  kubernetes_version           = var.kubernetes_version
  vpc_id                       = module.network.vpc_id
  private_subnet_ids           = module.network.private_subnet_ids
  endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs
  node_instance_types          = var.node_instance_types
  tags                         = local.tags
}

module "media_bucket" {
  source = "../../modules/media-bucket"

  name = local.media_bucket_name
  tags = local.tags

  # The player is served at https://<domain_name>/ (the ALB, edge.tf); its hls.js reads the
  # pre-signed playlists and segments from S3, cross-origin.
  cors_allowed_origins = ["https://${var.domain_name}"]
}

module "irsa_stream" {
  source = "../../modules/irsa-stream"

  role_name         = "${var.name}-stream-service"
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_provider     = module.cluster.oidc_provider
  namespace         = local.app_namespace
  service_account   = local.stream_service_account
  bucket_arn        = module.media_bucket.bucket_arn
  tags              = local.tags
}

module "alb_controller" {
  source = "../../modules/alb-controller"

  name_prefix       = var.name
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_provider     = module.cluster.oidc_provider
  tags              = local.tags
}

module "addons" {
  source = "../../modules/addons"

  cluster_name                   = module.cluster.cluster_name
  region                         = var.region
  vpc_id                         = module.network.vpc_id
  alb_controller_role_arn        = module.alb_controller.role_arn
  alb_controller_namespace       = module.alb_controller.namespace
  alb_controller_service_account = module.alb_controller.service_account

  # The whole cluster module, node group included: the charts wait for their pods to run.
  depends_on = [module.cluster]
}

# PostgreSQL for drama-service and episode-service: RDS Multi-AZ (modules/database). Each service
# reads its own secret through the Secrets Store CSI driver with its own IRSA role; the seed Job
# reads the master secret and both services' to create the roles and databases.
module "database" {
  source = "../../modules/database"

  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.cluster.node_security_group_id
  tags                     = local.tags
}

module "irsa_db" {
  source   = "../../modules/irsa-secrets"
  for_each = local.db_readers

  role_name         = "${var.name}-${each.key}"
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_provider     = module.cluster.oidc_provider
  namespace         = local.app_namespace
  service_account   = each.key
  secret_arns       = each.value
  kms_key_arn       = module.database.kms_key_arn
  tags              = local.tags
}
