"""stream-service settings, read once from the environment.

AWS credentials and region are not settings of ours: botocore's default chain finds them
(environment, shared config, or the web identity token IRSA mounts on EKS).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from broker import Env, WorkerSettings


@dataclass(frozen=True, slots=True)
class Settings:
    worker: WorkerSettings
    media_bucket: str = "drama-media"
    s3_endpoint_url: str | None = None
    presign_ttl_s: int = 3600

    @property
    def log_level(self) -> str:
        return self.worker.log_level

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(os.environ if environ is None else environ)
        return cls(
            worker=WorkerSettings.from_env(env, prefetch=64, metrics_port=9102),
            media_bucket=env.text("MEDIA_BUCKET", "drama-media"),
            s3_endpoint_url=env.text("S3_ENDPOINT_URL", "") or None,
            # SigV4 pre-signed URLs live at most 7 days.
            presign_ttl_s=env.integer("PRESIGN_TTL_S", 3600, low=1, high=7 * 24 * 3600),
        )
