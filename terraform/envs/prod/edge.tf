# HTTPS at the edge: an ACM certificate for the public name, validated through DNS records in the
# Route 53 zone, which the ALB (k8s/overlays/eks/ingress.yaml) serves on 443; port 80 redirects.
# Its ARN reaches the Ingress through terraform.env (CERTIFICATE_ARN).

resource "aws_acm_certificate" "edge" {
  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }

  tags = local.tags
}

resource "aws_route53_record" "edge_validation" {
  for_each = {
    for option in aws_acm_certificate.edge.domain_validation_options : option.domain_name => {
      name   = option.resource_record_name
      record = option.resource_record_value
      type   = option.resource_record_type
    }
  }

  zone_id         = var.hosted_zone_id
  name            = each.value.name
  type            = each.value.type
  records         = [each.value.record]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "edge" {
  certificate_arn         = aws_acm_certificate.edge.arn
  validation_record_fqdns = [for record in aws_route53_record.edge_validation : record.fqdn]
}
