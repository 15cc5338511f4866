"""Pre-signed S3 GET URLs at a small fraction of botocore's cost, identical to its URLs.

botocore's ``generate_presigned_url("get_object", ...)`` (docs/adr/presigner.md) runs
the whole request pipeline (parameter validation, endpoint rules, serialisation, event hooks) for
what is, once the client is configured, a string template and two hashes. `SigV4Presigner` does
only that part:

- the SigV4 signing key (an HMAC chain over date, region, service) is computed once per date and
  secret, not once per URL;
- the canonical query string and the string-to-sign prefix are built once per call, so each URL
  costs one ``quote``, one SHA-256 and one HMAC, the last from a copy of an HMAC object already
  keyed (which halves its cost);
- keys are quoted as botocore quotes S3's greedy ``{Key+}`` label: UTF-8, RFC 3986 unreserved
  characters and ``/`` kept, everything else percent-encoded.

What it signs with and where the URLs point are botocore's own decisions, read back rather than
re-implemented: `presigner_for` asks the client for one pre-signed URL of a probe key, takes the
address (virtual-hosted or path style, endpoint URL, accelerate/dualstack/FIPS hosts) and the
signing region from it, signs the same probe key at the same second and uses the fast path only if
the two URLs are byte for byte equal. Otherwise (SigV2, SigV4a for multi-region access points, S3
Express sessions, anything botocore may add later) it logs why at WARNING and keeps botocore for
every URL: slower, never wrong.

Credentials are the client's own credentials object, so environment, profile and IRSA web identity
credentials all work; refreshable ones are refreshed by botocore's ``get_frozen_credentials()``
before they expire, as they would be for the client's own requests. Nothing here logs a secret,
a token or a signed URL.

A pre-signed URL stops working when the credentials that signed it expire, whatever its
X-Amz-Expires says: IRSA's role sessions last an hour and botocore renews them 10-15 minutes
before the end, so a URL promised for an hour could die after ten minutes. Both presigners clamp
the lifetime they sign (and `Presigner.ttl_at`, which ``expires_at`` is computed from) to the
signing credentials' remaining life; static credentials have no expiry and are not clamped.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, unquote, urlsplit

from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "BotocorePresigner",
    "Presigner",
    "SigV4Presigner",
    "Target",
    "clamped_ttl",
    "credentials_expiry",
    "presigner_for",
]

_log = logging.getLogger(__name__)

_ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# Unreserved characters of RFC 3986 ('-', '.', '_' and alphanumerics are always safe for quote).
_QUERY_SAFE = "~"
_KEY_SAFE = "/~"  # S3's greedy {Key+} label keeps the slashes
# Keys made only of what quote() keeps as is (ASCII ranges: not \w, which matches any letter);
# the catalogue's keys are, and matching is a third of the cost of quoting.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9\-._~/]*").fullmatch
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Every character class that S3 keys quote differently: non-ASCII, space, reserved, '~', '%'.
PROBE_KEY = "presign-probe/Café ü+x=y~z%/a b/?#&;,:@!$'()*[]^`{|}\"<>\\.m3u8"


class CredentialSource(Protocol):
    """aiobotocore's credentials objects: static, or refreshed before they expire."""

    async def get_frozen_credentials(self) -> ReadOnlyCredentials: ...


class Presigner(Protocol):
    """What stream-service needs: pre-signed GET URLs for keys of one bucket."""

    @property
    def name(self) -> str:
        """Which implementation signs: ``sigv4`` (this module) or ``botocore``."""
        ...

    async def urls(self, keys: Sequence[str], now: datetime) -> list[str]:
        """One URL per key, in order, valid from ``now`` for `ttl_at` seconds."""
        ...

    def ttl_at(self, now: datetime) -> int:
        """The lifetime of URLs signed at ``now``: the configured TTL, or less when the
        credentials (as last refreshed by `urls`) expire sooner."""
        ...


def credentials_expiry(credentials: object) -> datetime | None:
    """When refreshable credentials (IRSA, assumed roles, SSO) expire; None for static ones.

    botocore keeps it in ``_expiry_time`` (RefreshableCredentials, aiobotocore's too) and has no
    public accessor for it.
    """
    expiry = getattr(credentials, "_expiry_time", None)
    return expiry if isinstance(expiry, datetime) else None


def clamped_ttl(ttl_s: int, expiry: datetime | None, now: datetime) -> int:
    """``ttl_s``, or the whole seconds left until ``expiry`` if fewer (at least 1: S3 refuses 0)."""
    if expiry is None:
        return ttl_s
    left = int((expiry - now).total_seconds())
    return max(1, min(ttl_s, left))


@dataclass(frozen=True, slots=True)
class Target:
    """Where a bucket's URLs point and how they are scoped, as botocore addresses them."""

    origin: str  # scheme://host[:port], exactly as in botocore's URLs
    path_prefix: str  # what precedes the quoted key: "/" or "/<bucket>/"
    host: str  # the signed Host header: lower case, without a default port
    region: str
    service: str

    @classmethod
    def from_presigned(cls, url: str, key: str) -> Target:
        """Read the target back from a URL botocore pre-signed for ``key``.

        Raises ValueError, saying what differs, if the URL is not one this module can reproduce.
        """
        parts = urlsplit(url)
        quoted = quote(key, safe=_KEY_SAFE)
        if parts.fragment or not parts.path.endswith(quoted):
            raise ValueError("the key is not the end of the URL path")
        params = {}
        for pair in parts.query.split("&"):
            name, _, value = pair.partition("=")
            params[name] = value
        if params.get("X-Amz-Algorithm") != _ALGORITHM:
            raise ValueError(f"not {_ALGORITHM} query authentication")
        expected = {
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        }
        if "X-Amz-Security-Token" in params:
            expected.add("X-Amz-Security-Token")
        if set(params) != expected:
            raise ValueError(f"unexpected query parameters {sorted(set(params) ^ expected)}")
        if params["X-Amz-SignedHeaders"] != "host":
            raise ValueError(f"signed headers {unquote(params['X-Amz-SignedHeaders'])!r}")
        scope = unquote(params["X-Amz-Credential"]).split("/")
        if len(scope) < 5 or scope[-1] != "aws4_request":
            raise ValueError("unexpected credential scope")
        region, service = scope[-3], scope[-2]
        return cls(
            origin=f"{parts.scheme}://{parts.netloc}",
            path_prefix=parts.path[: -len(quoted)],
            host=_host_header(parts.scheme, parts.hostname or "", parts.port),
            region=region,
            service=service,
        )


class SigV4Presigner:
    """SigV4 query-string pre-signing of GET object URLs, botocore's output at a fraction."""

    name = "sigv4"

    def __init__(self, target: Target, credentials: CredentialSource, ttl_s: int) -> None:
        self._target = target
        self._credentials = credentials
        self._ttl_s = ttl_s
        self._canonical_host = f"\nhost:{target.host}\n\nhost\nUNSIGNED-PAYLOAD"

    async def urls(self, keys: Sequence[str], now: datetime) -> list[str]:
        # Refreshes the credentials first if they expire soon (botocore's advisory and
        # mandatory refresh windows); a no-op check otherwise.
        credentials = await self._credentials.get_frozen_credentials()
        return self.sign(keys, credentials, now, self.ttl_at(now))

    def ttl_at(self, now: datetime) -> int:
        return clamped_ttl(self._ttl_s, credentials_expiry(self._credentials), now)

    def sign(
        self,
        keys: Sequence[str],
        credentials: ReadOnlyCredentials,
        now: datetime,
        ttl_s: int | None = None,
    ) -> list[str]:
        """Pre-sign ``keys`` with ``credentials`` at ``now`` (an aware datetime), valid for
        ``ttl_s`` seconds (the configured TTL by default)."""
        ttl_s = self._ttl_s if ttl_s is None else ttl_s
        target = self._target
        if credentials.access_key is None or credentials.secret_key is None:
            raise NoCredentialsError
        amz_date = now.astimezone(UTC).strftime(_AMZ_DATE_FORMAT)
        date = amz_date[:8]
        scope = f"{date}/{target.region}/{target.service}/aws4_request"
        credential = quote(f"{credentials.access_key}/{scope}", safe=_QUERY_SAFE)
        head = (
            f"X-Amz-Algorithm={_ALGORITHM}&X-Amz-Credential={credential}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={ttl_s}"
        )
        # The canonical query is sorted by name ('Security-Token' < 'SignedHeaders'); botocore's
        # URL keeps the token after SignedHeaders. Both orders are fixed: no sort per URL.
        if credentials.token is None:
            canonical_query = query = f"{head}&X-Amz-SignedHeaders=host"
        else:
            token = f"X-Amz-Security-Token={quote(credentials.token, safe=_QUERY_SAFE)}"
            canonical_query = f"{head}&{token}&X-Amz-SignedHeaders=host"
            query = f"{head}&X-Amz-SignedHeaders=host&{token}"
        tail = f"\n{canonical_query}{self._canonical_host}"
        to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n"
        keyed = signing_hmac(credentials.secret_key, date, target.region, target.service)
        prefix, origin = target.path_prefix, target.origin
        urls = []
        for object_key in keys:
            quoted = object_key if _PLAIN_KEY(object_key) else quote(object_key, _KEY_SAFE)
            path = prefix + quoted
            canonical = hashlib.sha256(f"GET\n{path}{tail}".encode()).hexdigest()
            signature = keyed.copy()
            signature.update((to_sign + canonical).encode())
            urls.append(f"{origin}{path}?{query}&X-Amz-Signature={signature.hexdigest()}")
        return urls


class BotocorePresigner:
    """botocore's own pre-signing, for configurations `SigV4Presigner` cannot reproduce."""

    name = "botocore"

    def __init__(self, client: S3Client, bucket: str, ttl_s: int) -> None:
        self._client = client
        self._bucket = bucket
        self._ttl_s = ttl_s

    async def urls(self, keys: Sequence[str], now: datetime) -> list[str]:
        # botocore reads its own clock; within the same second as ``now`` in practice.
        credentials = self._client._get_credentials()  # type: ignore[attr-defined]
        if credentials is not None:
            await credentials.get_frozen_credentials()  # refreshed first, as botocore would
        ttl_s = self.ttl_at(now)
        return [await self.url(key, ttl_s) for key in keys]

    def ttl_at(self, now: datetime) -> int:
        credentials = self._client._get_credentials()  # type: ignore[attr-defined]
        return clamped_ttl(self._ttl_s, credentials_expiry(credentials), now)

    async def url(self, key: str, ttl_s: int | None = None) -> str:
        return await self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=self._ttl_s if ttl_s is None else ttl_s,
        )


@functools.lru_cache(maxsize=8)
def signing_hmac(secret_key: str, date: str, region: str, service: str) -> hmac.HMAC:
    """An HMAC keyed with the SigV4 signing key (four HMACs, the same for a day); copy it to use."""
    key = hmac.digest(f"AWS4{secret_key}".encode(), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return hmac.new(key, digestmod=hashlib.sha256)


async def presigner_for(client: S3Client, bucket: str, ttl_s: int) -> Presigner:
    """The fast presigner if it reproduces the client's URLs byte for byte, else botocore's."""
    fallback = BotocorePresigner(client, bucket, ttl_s)
    # The client's own credentials object (refreshable when IRSA or a profile provides it):
    # botocore has no public accessor for it.
    credentials: CredentialSource | None = client._get_credentials()  # type: ignore[attr-defined]
    if credentials is None:
        _log.warning("pre-signing with botocore: no credentials found")
        return fallback
    frozen = await credentials.get_frozen_credentials()
    expected = await fallback.url(PROBE_KEY)
    try:
        target = Target.from_presigned(expected, PROBE_KEY)
        signed_at = _signed_at(expected)
    except ValueError as exc:
        _log.warning("pre-signing with botocore: its URLs are not plain SigV4 (%s)", exc)
        return fallback
    fast = SigV4Presigner(target, credentials, ttl_s)
    if fast.sign([PROBE_KEY], frozen, signed_at)[0] != expected:
        _log.warning("pre-signing with botocore: a probe URL signed here differs from its own")
        return fallback
    _log.info(
        "pre-signing with SigV4 for %s%s, region %s",
        target.origin,
        target.path_prefix,
        target.region,
    )
    return fast


def _signed_at(url: str) -> datetime:
    for pair in urlsplit(url).query.split("&"):
        name, _, value = pair.partition("=")
        if name == "X-Amz-Date":
            return datetime.strptime(value, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    raise ValueError("no X-Amz-Date")


def _host_header(scheme: str, hostname: str, port: int | None) -> str:
    # botocore's Host header: lower case (urlsplit's hostname is), IPv6 in brackets, and the
    # port only when it is not the scheme's default.
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return host
