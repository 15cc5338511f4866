provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

# Helm and Kubernetes talk to the new cluster with a token from `aws eks get-token`, fetched at
# each run, so no kubeconfig and no long-lived credential is involved.
provider "helm" {
  kubernetes = {
    host                   = module.cluster.cluster_endpoint
    cluster_ca_certificate = base64decode(module.cluster.cluster_certificate_authority_data)
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.cluster.cluster_name, "--region", var.region]
    }
  }
}

# Server-side apply of the RabbitMQ operators' upstream release manifests (modules/addons).
provider "kubectl" {
  host                   = module.cluster.cluster_endpoint
  cluster_ca_certificate = base64decode(module.cluster.cluster_certificate_authority_data)
  load_config_file       = false

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.cluster.cluster_name, "--region", var.region]
  }
}

provider "kubernetes" {
  host                   = module.cluster.cluster_endpoint
  cluster_ca_certificate = base64decode(module.cluster.cluster_certificate_authority_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.cluster.cluster_name, "--region", var.region]
  }
}

# The repository's production environment and Actions variables (github.tf). Authenticates with
# GITHUB_TOKEN from the environment (a token with admin rights on the repository).
provider "github" {
  owner = local.github_owner
}
