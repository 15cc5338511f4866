# The cluster add-ons the manifests in k8s/ rely on, each a Helm release with a pinned chart
# version (bump them together with the CRD-using manifests). Order matters where one chart's
# webhooks or CRDs are used by the next: Istio base before istiod before the gateway; the ALB
# controller's webhook before anything creates a Service of type LoadBalancer.

locals {
  istio_repository = "https://istio-release.storage.googleapis.com/charts"
}

resource "kubernetes_namespace_v1" "addon" {
  for_each = toset([var.istio_namespace, var.gateway_namespace, var.monitoring_namespace, "keda", "cert-manager"])

  metadata {
    name = each.key
    labels = {
      "app.kubernetes.io/part-of" = "cluster-addons"
    }
  }
}

resource "helm_release" "aws_load_balancer_controller" {
  name       = "aws-load-balancer-controller"
  namespace  = var.alb_controller_namespace
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = var.chart_versions.aws_load_balancer_controller

  values = [yamlencode({
    clusterName  = var.cluster_name
    region       = var.region
    vpcId        = var.vpc_id
    replicaCount = 2
    serviceAccount = {
      create = true
      name   = var.alb_controller_service_account
      annotations = {
        "eks.amazonaws.com/role-arn" = var.alb_controller_role_arn
      }
    }
  })]
}

resource "helm_release" "istio_base" {
  name       = "istio-base"
  namespace  = kubernetes_namespace_v1.addon[var.istio_namespace].metadata[0].name
  repository = local.istio_repository
  chart      = "base"
  version    = var.chart_versions.istio

  values = [yamlencode({
    defaultRevision = "default"
  })]
}

# The CNI node agent redirects the sidecars' traffic: no privileged istio-init container, so the
# application namespace can enforce Pod Security "restricted" (values/istiod.yaml enables it).
resource "helm_release" "istio_cni" {
  name       = "istio-cni"
  namespace  = kubernetes_namespace_v1.addon[var.istio_namespace].metadata[0].name
  repository = local.istio_repository
  chart      = "cni"
  version    = var.chart_versions.istio

  values = [yamlencode({
    profile = "default"
  })]

  depends_on = [helm_release.istio_base]
}

resource "helm_release" "istiod" {
  name       = "istiod"
  namespace  = kubernetes_namespace_v1.addon[var.istio_namespace].metadata[0].name
  repository = local.istio_repository
  chart      = "istiod"
  version    = var.chart_versions.istio

  # The trace provider k8s/mesh's Telemetry names (values/istiod.yaml, the same file the kind
  # guide's values repeat), then what only EKS adds.
  values = [
    file("${path.module}/values/istiod.yaml"),
    file("${path.module}/values/istiod-eks.yaml"),
  ]

  depends_on = [helm_release.istio_base, helm_release.istio_cni]
}

# The ingress gateway behind the ALB: a ClusterIP Service that the ALB (target type ip) reaches
# directly; the chart labels its pods istio=<release name without "istio-">, so "ingressgateway".
resource "helm_release" "istio_ingressgateway" {
  name       = "istio-ingressgateway"
  namespace  = kubernetes_namespace_v1.addon[var.gateway_namespace].metadata[0].name
  repository = local.istio_repository
  chart      = "gateway"
  version    = var.chart_versions.istio

  values = [yamlencode({
    service = {
      type = "ClusterIP"
    }
  })]

  depends_on = [helm_release.istiod, helm_release.aws_load_balancer_controller]
}

resource "helm_release" "kube_prometheus_stack" {
  name       = "kube-prometheus-stack"
  namespace  = kubernetes_namespace_v1.addon[var.monitoring_namespace].metadata[0].name
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "kube-prometheus-stack"
  version    = var.chart_versions.kube_prometheus_stack

  # Istio's certificates for the mTLS scrapes, the Jaeger data source and the dashboard folders
  # (values/kube-prometheus-stack.yaml, the same file the kind guide's values repeat), then what
  # only EKS adds.
  values = [
    file("${path.module}/values/kube-prometheus-stack.yaml"),
    file("${path.module}/values/kube-prometheus-stack-eks.yaml"),
  ]

  # Prometheus's pod must get its sidecar (the certificates) when created: istiod's injector first.
  depends_on = [helm_release.istiod]
}

resource "helm_release" "keda" {
  name       = "keda"
  namespace  = kubernetes_namespace_v1.addon["keda"].metadata[0].name
  repository = "https://kedacore.github.io/charts"
  chart      = "keda"
  version    = var.chart_versions.keda
}

# The Secrets Store CSI driver with its AWS provider (the chart carries the driver): the pods of
# drama-service, episode-service and the seed Job read their RDS secrets from Secrets Manager
# with their own IRSA roles (k8s/overlays/eks/database.yaml); syncSecret makes the Kubernetes
# Secrets their DATABASE_URL names.
resource "helm_release" "secrets_store_csi_provider_aws" {
  name       = "secrets-store-csi-provider-aws"
  namespace  = var.csi_namespace
  repository = "https://aws.github.io/secrets-store-csi-driver-provider-aws"
  chart      = "secrets-store-csi-driver-provider-aws"
  version    = var.chart_versions.secrets_store_csi_provider_aws

  values = [yamlencode({
    secrets-store-csi-driver = {
      install = true
      syncSecret = {
        enabled = true
      }
    }
  })]
}

# cert-manager issues the broker's TLS certificate (k8s/base/rabbitmq/tls.yaml), with its CRDs.
resource "helm_release" "cert_manager" {
  name       = "cert-manager"
  namespace  = kubernetes_namespace_v1.addon["cert-manager"].metadata[0].name
  repository = "https://charts.jetstack.io"
  chart      = "cert-manager"
  version    = var.chart_versions.cert_manager

  values = [yamlencode({
    crds = {
      enabled = true
    }
  })]
}

# The RabbitMQ cluster operator and messaging topology operator (k8s/ declares its users and
# permissions as topology CRs), from the upstream projects' own release manifests and images
# (rabbitmqoperator/*), at the versions of the CRDs tests/infra/test_crds.py validates against;
# not Bitnami's chart, whose free images are frozen since 2025. Upstream ships
# no Helm chart: the manifests are applied document by document, server-side. The topology
# operator's webhook certificate comes from cert-manager (installed above).
locals {
  rabbitmq_operator_manifests = {
    cluster  = "https://github.com/rabbitmq/cluster-operator/releases/download/${var.rabbitmq_operator_versions.cluster}/cluster-operator.yml"
    topology = "https://github.com/rabbitmq/messaging-topology-operator/releases/download/${var.rabbitmq_operator_versions.topology}/messaging-topology-operator-with-certmanager.yaml"
  }
}

data "http" "rabbitmq_operator" {
  for_each = local.rabbitmq_operator_manifests

  url = each.value

  lifecycle {
    postcondition {
      condition     = self.status_code == 200
      error_message = "could not download ${each.value}"
    }
  }
}

data "kubectl_file_documents" "rabbitmq_operator" {
  for_each = data.http.rabbitmq_operator

  content = each.value.response_body
}

resource "kubectl_manifest" "rabbitmq_cluster_operator" {
  for_each = data.kubectl_file_documents.rabbitmq_operator["cluster"].manifests

  yaml_body         = each.value
  server_side_apply = true
  wait              = true

  depends_on = [helm_release.kube_prometheus_stack]
}

resource "kubectl_manifest" "rabbitmq_topology_operator" {
  for_each = data.kubectl_file_documents.rabbitmq_operator["topology"].manifests

  yaml_body         = each.value
  server_side_apply = true
  wait              = true

  depends_on = [helm_release.cert_manager, kubectl_manifest.rabbitmq_cluster_operator]
}

# The default StorageClass: encrypted gp3 volumes from the EBS CSI driver (the cluster's add-on).
# RabbitmqCluster names no storageClassName, so each broker's PersistentVolumeClaim lands here.
# WaitForFirstConsumer creates a volume in the zone where its broker was scheduled (EBS volumes
# are zonal; the brokers spread over zones).
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = "gp3"
    annotations = {
      "storageclass.kubernetes.io/is-default-class" = "true"
    }
  }

  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Delete"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true

  parameters = {
    type      = "gp3"
    encrypted = "true"
  }
}
