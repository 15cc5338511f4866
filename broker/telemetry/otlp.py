"""OTLP/HTTP with the JSON encoding: the span exporter the services use by default.

``OTEL_TRACES_EXPORTER=otlp`` (the default) with ``OTEL_EXPORTER_OTLP_PROTOCOL`` unset or
``http/json`` selects it, and so does ``OTEL_TRACES_EXPORTER=otlp_json`` (its
``opentelemetry_traces_exporter`` entry point in pyproject.toml, which the SDK's own configurator
finds too); ``http/protobuf`` selects the official exporter (docs/adr/otel-json-exporter.md).

Why not the official ``OTLPSpanExporter``: at 100% sampling a py-spy profile of drama-service
put most of the export thread's CPU in building protobuf
message objects (``encode_spans``), one Python object per span, attribute and value. Here
:mod:`broker.telemetry.otlp_encode` writes the same message in OTLP/JSON, a span of the common
shape straight to bytes (less CPU a span: ``loadtest/bench_export.py``), and it goes out on one
kept-alive urllib3 connection.

Settings are the standard ones, read from the mapping given to
:meth:`OtlpJsonSpanExporter.from_env` or, for those not passed to the constructor, from the
process environment (the signal-specific ``OTEL_EXPORTER_OTLP_TRACES_*`` first): ``ENDPOINT``
(the base URL, to which
``/v1/traces`` is added; the ``TRACES_`` one is used as is), ``HEADERS``, ``TIMEOUT`` (seconds, as
the Python SDK reads it, default 10), ``COMPRESSION`` (``gzip``, ``deflate``, ``none``) and the
TLS files ``CERTIFICATE``, ``CLIENT_CERTIFICATE``, ``CLIENT_KEY``.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import random
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import urllib3
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.re import parse_env_headers

from broker.errors import ConfigError
from broker.telemetry.otlp_encode import encode_spans

log = logging.getLogger("broker._otlp")  # its name before broker/ had packages

__all__ = ["OtlpJsonSpanExporter", "encode_spans"]


_RETRYABLE = frozenset({429, 502, 503, 504})  # as the official exporter: the rest is final
_MAX_ATTEMPTS = 6
_COMPRESSORS = {
    "none": None,
    "gzip": lambda body: gzip.compress(body, compresslevel=6),
    "deflate": zlib.compress,
}


def _retry_after(raw: str | None) -> float | None:
    """``Retry-After`` in seconds from now: delay-seconds or an HTTP date (RFC 9110)."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class _Settings(NamedTuple):
    endpoint: str
    headers: Mapping[str, str]
    timeout: float
    compression: str
    certificate: str | None
    client_certificate: str | None
    client_key: str | None


def _settings(environ: Mapping[str, str]) -> _Settings:
    """What the ``OTEL_EXPORTER_OTLP_[TRACES_]*`` variables of ``environ`` say, with defaults."""

    def setting(name: str) -> str | None:
        value = environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(
            f"OTEL_EXPORTER_OTLP_{name}"
        )
        return value.strip() if value else None

    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint:
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
        endpoint = base.rstrip("/") + "/v1/traces"
    raw_timeout = setting("TIMEOUT") or "10"
    try:
        timeout = float(raw_timeout)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout < math.inf:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT must be seconds > 0, got {raw_timeout!r}")
    return _Settings(
        endpoint,
        headers=parse_env_headers(setting("HEADERS") or "", liberal=True),
        timeout=timeout,
        compression=(setting("COMPRESSION") or "none").lower(),
        certificate=setting("CERTIFICATE"),
        client_certificate=setting("CLIENT_CERTIFICATE"),
        client_key=setting("CLIENT_KEY"),
    )


class OtlpJsonSpanExporter(SpanExporter):
    """Sends spans as OTLP/JSON to ``endpoint`` (the full ``.../v1/traces`` URL).

    Runs in the batch processor's thread, so it blocks: one connection, kept alive. A 429, 502,
    503, 504 or a connection failure is retried with exponential backoff (1, 2, 4 s ±20%, or the
    server's ``Retry-After``) while the next attempt still fits in ``timeout`` seconds; any other
    answer fails the batch at once. Failures are logged without headers (they carry credentials)
    and without the endpoint (it may too); :meth:`export` never raises for them.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: str | None = None,
        certificate: str | None = None,
        client_certificate: str | None = None,
        client_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Each setting not given is the ``OTEL_EXPORTER_OTLP_[TRACES_]*`` variable of
        ``environ`` (the process environment by default), else the standard default, as the
        official exporter does: so the SDK's configurator, which builds an exporter registered
        under ``opentelemetry_traces_exporter`` with no arguments, gets the configured one."""
        env = _settings(os.environ if environ is None else environ)
        endpoint = endpoint or env.endpoint
        timeout = env.timeout if timeout is None else timeout
        compression = env.compression if compression is None else compression
        certificate = certificate or env.certificate
        client_certificate = client_certificate or env.client_certificate
        client_key = client_key or env.client_key
        if compression not in _COMPRESSORS:
            raise ConfigError(
                f"OTLP compression must be gzip, deflate or none, got {compression!r}"
            )
        self._endpoint = endpoint
        self._timeout = timeout
        self._compress = _COMPRESSORS[compression]
        self._headers = {"Content-Type": "application/json", "User-Agent": "drama-streaming-otlp"}
        if self._compress is not None:
            self._headers["Content-Encoding"] = compression
        self._headers |= env.headers if headers is None else headers
        tls: dict[str, Any] = {"ca_certs": certificate} if certificate else {}
        if client_certificate:
            tls |= {"cert_file": client_certificate, "key_file": client_key}
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False, **tls)
        self._stopping = threading.Event()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OtlpJsonSpanExporter:
        """The exporter the ``OTEL_EXPORTER_OTLP_[TRACES_]*`` variables of ``environ`` describe."""
        return cls(environ=environ)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopping.is_set():
            return SpanExportResult.FAILURE
        body = encode_spans(spans)
        if self._compress is not None:
            body = self._compress(body)
        if self._send(body, len(spans)):
            return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE

    def _send(self, body: bytes, count: int) -> bool:
        deadline = time.monotonic() + self._timeout
        for attempt in range(_MAX_ATTEMPTS):
            try:
                response = self._pool.request(
                    "POST",
                    self._endpoint,
                    body=body,
                    headers=self._headers,
                    timeout=urllib3.Timeout(total=max(deadline - time.monotonic(), 0.001)),
                )
            except urllib3.exceptions.HTTPError as error:  # refused, reset, timed out
                problem, wait = type(error).__name__, None
            else:
                if 200 <= response.status < 300:
                    return True
                problem = f"HTTP {response.status} {response.reason or ''}".strip()
                if response.status not in _RETRYABLE:
                    log.error("OTLP export of %d spans failed: %s", count, problem)
                    return False
                wait = _retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = 2**attempt * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)
            if attempt + 1 == _MAX_ATTEMPTS or wait > deadline - time.monotonic():
                log.error("OTLP export of %d spans failed, not retried in time: %s", count, problem)
                return False
            log.warning("OTLP export: %s, retrying in %.2f s", problem, wait)
            if self._stopping.wait(wait):
                return False
        return False  # pragma: no cover (the loop returns on its last attempt)

    def shutdown(self) -> None:
        """Stop: a retry waiting for its backoff gives up now, and the connection is closed."""
        self._stopping.set()
        self._pool.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here: the batch processor flushes."""
        return True
