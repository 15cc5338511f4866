"""stream-service settings, read once from the environment.

AWS credentials and region are not settings of ours: botocore's default chain finds them
(environment, shared config, or the web identity token IRSA mounts on EKS).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from broker import Env, QueueType


@dataclass(frozen=True, slots=True)
class Settings:
    amqp_url: str = field(repr=False)
    media_bucket: str = "drama-media"
    s3_endpoint_url: str | None = None
    presign_ttl_s: int = 3600
    prefetch: int = 64
    faults_enabled: bool = False
    # Replies confirmed by the broker before their request is acked (docs/rpc.md).
    reply_confirms: bool = False
    queue_type: QueueType = "classic"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    metrics_port: int = 9102
    # RPC over HTTP beside the queue (broker._http): off unless a port is set.
    rpc_http_host: str = "0.0.0.0"  # noqa: S104 - called from other containers
    rpc_http_port: int | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(os.environ if environ is None else environ)
        queue_type = env.choice("RPC_QUEUE_TYPE", "classic", ("classic", "quorum"))
        return cls(
            amqp_url=env.text("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            media_bucket=env.text("MEDIA_BUCKET", "drama-media"),
            s3_endpoint_url=env.text("S3_ENDPOINT_URL", "") or None,
            # SigV4 pre-signed URLs live at most 7 days.
            presign_ttl_s=env.integer("PRESIGN_TTL_S", 3600, low=1, high=7 * 24 * 3600),
            prefetch=env.integer("PREFETCH", 64, low=1, high=65535),
            faults_enabled=env.flag("FAULTS_ENABLED", default=False),
            reply_confirms=env.flag("RPC_REPLY_CONFIRMS", default=False),
            queue_type="quorum" if queue_type == "quorum" else "classic",
            metrics_host=env.text("METRICS_HOST", "0.0.0.0"),  # noqa: S104 - see above
            metrics_port=env.integer("METRICS_PORT", 9102, low=1, high=65535),
            rpc_http_host=env.text("RPC_HTTP_HOST", "0.0.0.0"),  # noqa: S104 - see above
            rpc_http_port=env.integer("RPC_HTTP_PORT", 0, low=1, high=65535) or None,
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        )
