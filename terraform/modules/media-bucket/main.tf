# The media bucket: private (no ACLs, every public access path blocked), encrypted, versioned,
# TLS only. stream-service never serves bytes itself: it hands out pre-signed GET URLs that
# players fetch from S3 directly, signed with its IRSA role.
resource "aws_s3_bucket" "media" {
  #checkov:skip=CKV_AWS_145:SSE-S3 on purpose: with SSE-KMS every pre-signed GET would also need kms:Decrypt on the stream-service role, which is meant to hold s3:GetObject and nothing else.
  #checkov:skip=CKV_AWS_144:no cross-region replication: the media is re-uploadable sample content (python -m stream seed); enable replication for real catalogues.
  #checkov:skip=CKV2_AWS_62:no event notifications: nothing reacts to uploads.
  #checkov:skip=CKV_AWS_18:access logging is optional (var.access_log_bucket) because it needs a separate log bucket that this stack does not own.
  bucket = var.name

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "media" {
  bucket = aws_s3_bucket.media.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "media" {
  bucket = aws_s3_bucket.media.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "media" {
  bucket = aws_s3_bucket.media.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "media" {
  bucket = aws_s3_bucket.media.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Versioning keeps overwritten and deleted media; old versions expire so they do not pile up.
resource "aws_s3_bucket_lifecycle_configuration" "media" {
  bucket = aws_s3_bucket.media.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.media]
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.media.arn,
      "${aws_s3_bucket.media.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "media" {
  bucket = aws_s3_bucket.media.id
  policy = data.aws_iam_policy_document.tls_only.json

  depends_on = [aws_s3_bucket_public_access_block.media]
}

resource "aws_s3_bucket_logging" "media" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.media.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.name}/"
}

# The player (hls.js, on the site's own https origin) fetches the pre-signed playlists and
# segments from this bucket's endpoint, another origin: the browser needs a CORS answer. Only
# GET and HEAD, only from the listed https origins; Range may be sent (EXT-X-BYTERANGE
# playlists), Content-Range/Content-Length/ETag may be read. Nothing becomes readable without a
# signature: CORS only lets the page see what a signed URL already returns.
resource "aws_s3_bucket_cors_configuration" "media" {
  count = length(var.cors_allowed_origins) == 0 ? 0 : 1

  bucket = aws_s3_bucket.media.id

  cors_rule {
    id              = "player"
    allowed_methods = ["GET", "HEAD"]
    allowed_origins = var.cors_allowed_origins
    allowed_headers = ["Range"]
    expose_headers  = ["Content-Length", "Content-Range", "ETag"]
    max_age_seconds = 3600
  }
}
