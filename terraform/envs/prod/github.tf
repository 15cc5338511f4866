# GitHub Actions reaches AWS through OIDC: no access keys exist. Two roles, each trusting tokens of
# this repository only, only for STS, and one subject each (tests/infra/test_terraform.py derives
# both from the workflows):
#   github_push    ref:refs/heads/main (release.yml builds and pushes the image; it runs on
#                  workflow_run after ci.yml, and a workflow_run job carries the default branch's
#                  ref, so main must stay the default branch): ECR push to the two repositories only
#                  (the services' image and the player's).
#   github_deploy  environment:<github_environment> (deploy.yml's job: kubectl apply): reads the
#                  cluster and checks the image exists; it cannot push. The environment itself,
#                  its required reviewers and its main-only branch policy are set here too
#                  (github provider), not only described in the docs.

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 0 : 1

  url = "https://token.actions.githubusercontent.com"
}

locals {
  github_owner             = split("/", var.github_repository)[0]
  github_repository_name   = split("/", var.github_repository)[1]
  github_oidc_provider_arn = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : data.aws_iam_openid_connect_provider.github[0].arn
}

data "aws_iam_policy_document" "github_push_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:ref:refs/heads/main"]
    }
  }
}

data "aws_iam_policy_document" "github_deploy_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:environment:${var.github_environment}"]
    }
  }
}

data "aws_iam_policy_document" "github_push" {
  statement {
    sid       = "EcrLogin"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid    = "EcrPushThisRepository"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [aws_ecr_repository.app.arn, aws_ecr_repository.web.arn]
  }
}

data "aws_iam_policy_document" "github_deploy" {
  statement {
    sid       = "ImageExists"
    effect    = "Allow"
    actions   = ["ecr:DescribeImages"]
    resources = [aws_ecr_repository.app.arn, aws_ecr_repository.web.arn]
  }

  statement {
    sid       = "KubeconfigForThisCluster"
    effect    = "Allow"
    actions   = ["eks:DescribeCluster"]
    resources = [module.cluster.cluster_arn]
  }
}

resource "aws_iam_role" "github_push" {
  name                 = "${var.name}-github-push"
  description          = "GitHub Actions of ${var.github_repository}, main branch: push the images"
  assume_role_policy   = data.aws_iam_policy_document.github_push_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "github_push" {
  name   = "push"
  role   = aws_iam_role.github_push.id
  policy = data.aws_iam_policy_document.github_push.json
}

resource "aws_iam_role" "github_deploy" {
  name                 = "${var.name}-github-deploy"
  description          = "GitHub Actions of ${var.github_repository}, environment ${var.github_environment}: deploy the eks overlay"
  assume_role_policy   = data.aws_iam_policy_document.github_deploy_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "github_deploy" {
  name   = "deploy"
  role   = aws_iam_role.github_deploy.id
  policy = data.aws_iam_policy_document.github_deploy.json
}

resource "aws_eks_access_entry" "github_deploy" {
  cluster_name  = module.cluster.cluster_name
  principal_arn = aws_iam_role.github_deploy.arn
  type          = "STANDARD"
}

resource "aws_eks_access_policy_association" "github_deploy" {
  cluster_name  = module.cluster.cluster_name
  principal_arn = aws_iam_role.github_deploy.arn
  policy_arn    = var.deploy_access_policy_arn

  access_scope {
    type = "cluster"
  }

  depends_on = [aws_eks_access_entry.github_deploy]
}

# The environment the deploy role trusts: a run waits for one of the reviewers (not the person who
# started it), and only main may deploy.
resource "github_repository_environment" "production" {
  repository          = local.github_repository_name
  environment         = var.github_environment
  prevent_self_review = true
  wait_timer          = 0

  reviewers {
    users = var.production_reviewer_user_ids
    teams = var.production_reviewer_team_ids
  }

  deployment_branch_policy {
    protected_branches     = false
    custom_branch_policies = true
  }
}

resource "github_repository_environment_deployment_policy" "production_main" {
  repository     = local.github_repository_name
  environment    = github_repository_environment.production.environment
  branch_pattern = "main"
}

# The role ARNs where the workflows read them: the push role for the repository (release.yml),
# the deploy role inside the environment only (deploy.yml).
resource "github_actions_variable" "push_role" {
  repository    = local.github_repository_name
  variable_name = "AWS_PUSH_ROLE_ARN"
  value         = aws_iam_role.github_push.arn
}

resource "github_actions_environment_variable" "deploy_role" {
  repository    = local.github_repository_name
  environment   = github_repository_environment.production.environment
  variable_name = "AWS_DEPLOY_ROLE_ARN"
  value         = aws_iam_role.github_deploy.arn
}
