# IRSA role of the AWS Load Balancer Controller. iam_policy.json is the controller's published
# policy (docs/install/iam_policy.json upstream); keep it in step with the chart version in the
# addons module when upgrading.
data "aws_iam_policy_document" "trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "controller" {
  #checkov:skip=CKV_AWS_290:the controller's upstream policy; its write actions are scoped by the elbv2.k8s.aws/cluster tag conditions where the ELB API allows it.
  #checkov:skip=CKV_AWS_355:the upstream policy needs "*" for Describe* and Create* calls, which take no resource ARN.
  #checkov:skip=CKV_AWS_289:upstream policy as published (security group and tag management are the controller's job).
  #checkov:skip=CKV2_AWS_40:upstream policy as published.
  name        = "${var.name_prefix}-aws-load-balancer-controller"
  description = "AWS Load Balancer Controller (upstream policy)"
  policy      = file("${path.module}/iam_policy.json")

  tags = var.tags
}

resource "aws_iam_role" "controller" {
  name               = "${var.name_prefix}-aws-load-balancer-controller"
  description        = "AWS Load Balancer Controller (IRSA)"
  assume_role_policy = data.aws_iam_policy_document.trust.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "controller" {
  role       = aws_iam_role.controller.name
  policy_arn = aws_iam_policy.controller.arn
}
