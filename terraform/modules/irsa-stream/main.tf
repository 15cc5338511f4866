# IRSA for stream-service: only its own ServiceAccount, with a token minted for STS, may assume
# the role, and the role may only read objects of the media bucket (what a pre-signed GET needs).
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

data "aws_iam_policy_document" "read_media" {
  statement {
    sid       = "ReadMediaObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arn}/*"]
  }
}

resource "aws_iam_role" "stream_service" {
  name                 = var.role_name
  description          = "stream-service (IRSA): pre-signs GETs of the media bucket"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600

  tags = var.tags
}

resource "aws_iam_role_policy" "read_media" {
  name   = "read-media"
  role   = aws_iam_role.stream_service.id
  policy = data.aws_iam_policy_document.read_media.json
}
