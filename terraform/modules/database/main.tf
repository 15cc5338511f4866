# PostgreSQL for drama-service and episode-service on EKS: Amazon RDS, Multi-AZ (a synchronous
# standby in another zone, automatic failover), encrypted with its own KMS key, automated backups
# with point-in-time recovery, TLS required (rds.force_ssl), reachable on 5432 from the nodes
# only. The master password is managed by RDS in Secrets Manager (rotated by RDS); each service's
# own role and DATABASE_URL live in a Secrets Manager secret of their own, which the pods read
# through the Secrets Store CSI driver with an IRSA role that may read that secret only
# (modules/irsa-secrets, k8s/overlays/eks/database.yaml). The seed Job creates the roles and
# databases with the master credentials (deploy/postgres/init-databases.sh).

data "aws_caller_identity" "current" {}

# Administered by the account (IAM policies grant its use: the readers' roles, kms:ViaService).
resource "aws_kms_key" "db" {
  description         = "${var.name}: RDS storage, Performance Insights and the database secrets"
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

resource "aws_kms_alias" "db" {
  name          = "alias/${var.name}-db"
  target_key_id = aws_kms_key.db.key_id
}

resource "aws_db_subnet_group" "db" {
  name       = "${var.name}-db"
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "PostgreSQL from the EKS nodes only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_nodes" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the EKS nodes (pods)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = var.client_security_group_id
}

resource "aws_db_parameter_group" "db" {
  name   = "${var.name}-postgres17"
  family = "postgres17"

  # Clients must use TLS; connections and disconnections are logged.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  tags = var.tags
}

data "aws_iam_policy_document" "monitoring_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "db" {
  identifier     = "${var.name}-postgres"
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.db.arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.db.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.db.name

  username                            = "postgres"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.db.key_id
  iam_database_authentication_enabled = true

  backup_retention_period   = var.backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-postgres-final"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  performance_insights_enabled    = true
  performance_insights_kms_key_id = aws_kms_key.db.arn
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.monitoring.arn

  tags = var.tags
}

# One owner role per database; its password only in its service's secret (hex: safe in a URL).
resource "random_password" "service" {
  for_each = var.services

  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "service" {
  #checkov:skip=CKV2_AWS_57:the roles' passwords are rotated by re-running Terraform (taint random_password) and the seed Job, which ALTERs the role; no rotation Lambda
  for_each = var.services

  name                    = "${var.name}/${each.key}-db"
  description             = "${each.key}: PostgreSQL role ${each.value} and its DATABASE_URL (TLS required)"
  kms_key_id              = aws_kms_key.db.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "service" {
  for_each = var.services

  secret_id = aws_secretsmanager_secret.service[each.key].id
  secret_string = jsonencode({
    username     = each.value
    password     = random_password.service[each.key].result
    DATABASE_URL = "postgresql+asyncpg://${each.value}:${random_password.service[each.key].result}@${aws_db_instance.db.address}:${aws_db_instance.db.port}/${each.value}?ssl=require"
  })
}
