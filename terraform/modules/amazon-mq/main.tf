# Amazon MQ for RabbitMQ, an alternative to the in-cluster RabbitmqCluster. It speaks AMQP only
# over TLS (amqps://, 5671); the broker sits in the private subnets, is not publicly accessible,
# and only the nodes may reach 5671. The admin password is generated and kept in Secrets
# Manager, never in an output.

data "aws_caller_identity" "current" {}

resource "random_password" "admin" {
  length = 32
  # Amazon MQ refuses commas, colons and equals signs in passwords.
  override_special = "!#%&*()-_+[]{}<>?"
}

resource "aws_security_group" "broker" {
  name_prefix = "${var.name}-amqps-"
  description = "Amazon MQ ${var.name}: AMQPS from the EKS nodes only"
  vpc_id      = var.vpc_id

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "amqps_from_nodes" {
  security_group_id            = aws_security_group.broker.id
  description                  = "AMQPS from the EKS nodes"
  ip_protocol                  = "tcp"
  from_port                    = 5671
  to_port                      = 5671
  referenced_security_group_id = var.client_security_group_id
}

resource "aws_mq_broker" "this" {
  #checkov:skip=CKV_AWS_209:Amazon MQ for RabbitMQ encrypts at rest with an AWS owned key only; a customer managed key is not offered for this engine.
  #checkov:skip=CKV_AWS_48:RabbitMQ brokers publish general logs only; Amazon MQ has no audit log for this engine.
  broker_name                = var.name
  engine_type                = "RabbitMQ"
  engine_version             = var.engine_version
  host_instance_type         = var.instance_type
  deployment_mode            = "CLUSTER_MULTI_AZ"
  publicly_accessible        = false
  subnet_ids                 = var.subnet_ids
  security_groups            = [aws_security_group.broker.id]
  auto_minor_version_upgrade = true
  apply_immediately          = false

  user {
    username = var.admin_username
    password = random_password.admin.result
  }

  logs {
    general = true
  }

  maintenance_window_start_time {
    day_of_week = "SUNDAY"
    time_of_day = "03:00"
    time_zone   = "UTC"
  }

  tags = var.tags
}

resource "aws_kms_key" "secret" {
  description         = "Encrypts the Amazon MQ ${var.name} credentials in Secrets Manager"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })

  tags = var.tags
}

resource "aws_secretsmanager_secret" "admin" {
  #checkov:skip=CKV2_AWS_57:rotation would need a Lambda that also changes the broker user; rotate with `terraform apply -replace=module.amazon_mq[0].random_password.admin` instead.
  name_prefix = "${var.name}/amqp-"
  description = "Amazon MQ ${var.name}: admin user and AMQP_URL (amqps)"
  kms_key_id  = aws_kms_key.secret.arn

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "admin" {
  secret_id = aws_secretsmanager_secret.admin.id
  secret_string = jsonencode({
    username = var.admin_username
    password = random_password.admin.result
    AMQP_URL = replace(
      aws_mq_broker.this.instances[0].endpoints[0],
      "amqps://",
      "amqps://${var.admin_username}:${urlencode(random_password.admin.result)}@",
    )
  })
}
