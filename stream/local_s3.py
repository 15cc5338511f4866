"""An embedded S3 endpoint for `make run` and tests: moto's S3 behind a pre-signed URL guard.

moto stores objects and speaks the S3 API well enough for aioboto3, but it serves any GET: it
checks neither the expiry nor the signature of a pre-signed URL, and it serves objects to anonymous
callers. The URLs that stream-service hands out are the point of this project, so a WSGI middleware
checks what AWS would check before moto sees a GET or HEAD of an object:

- SigV4 query auth (``X-Amz-Signature``): parameters well formed (else 400
  ``AuthorizationQueryParametersError``), access key id known (else 403 ``InvalidAccessKeyId``),
  ``X-Amz-Date`` + ``X-Amz-Expires`` not passed (else 403 ``AccessDenied``, "Request has
  expired"), signature recomputed with the endpoint's secret key (else 403
  ``SignatureDoesNotMatch``);
- no auth at all: 403 ``AccessDenied``, the bucket is private as in AWS;
- anything else (an ``Authorization`` header, bucket operations, writes) goes to moto untouched.

Run it with ``python -m stream.local_s3 [--host 127.0.0.1] [--port 9000]``; the key pair comes from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (both or neither; neither means
``DEFAULT_ACCESS_KEY_ID``/``DEFAULT_SECRET_ACCESS_KEY``). Tests start a `LocalS3` on port 0 in a
thread. moto keeps objects in process-global backends, so all endpoints of one process share them.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
import re
import secrets
import signal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes, urlsplit
from xml.sax.saxutils import escape

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_SECRET_ACCESS_KEY",
    "AuthFailure",
    "LocalS3",
    "PresignedGetGuard",
    "main",
    "verify_query_auth",
]

_log = logging.getLogger(__name__)

# Local-only credentials, for a plain `python -m stream.local_s3`; they guard nothing real.
DEFAULT_ACCESS_KEY_ID = "local-s3"
DEFAULT_SECRET_ACCESS_KEY = "local-s3-secret"  # noqa: S105

_ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_MAX_EXPIRES_S = 7 * 24 * 3600  # S3's limit for SigV4 pre-signed URLs
_REQUIRED_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
)


@dataclass(frozen=True)
class AuthFailure:
    """Why a request is refused: an S3 error code and message, plus S3's detail elements."""

    status: int
    code: str
    message: str
    details: tuple[tuple[str, str], ...] = ()

    def to_xml(self, request_id: str) -> bytes:
        """The S3 error document for this failure."""
        parts = [f"<Code>{self.code}</Code>", f"<Message>{escape(self.message)}</Message>"]
        parts += [f"<{name}>{escape(value)}</{name}>" for name, value in self.details]
        parts.append(f"<RequestId>{request_id}</RequestId>")
        body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
        return body.encode()


def verify_query_auth(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    now: datetime,
) -> AuthFailure | None:
    """Check a SigV4 pre-signed S3 request; ``None`` means it may be served.

    ``path`` is the decoded request path, ``query_string`` the percent-encoded query as sent,
    ``headers`` are keyed by lower-case name, ``credentials`` maps access key id to secret key and
    ``now`` is an aware datetime.
    """
    pairs = _query_pairs(query_string)
    try:
        auth = _QueryAuth.parse(dict(pairs))
    except ValueError as exc:
        return AuthFailure(400, "AuthorizationQueryParametersError", str(exc))
    secret_key = credentials.get(auth.access_key_id)
    if secret_key is None:
        return AuthFailure(
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            (("AWSAccessKeyId", auth.access_key_id),),
        )
    expires_at = auth.signed_at + timedelta(seconds=auth.expires_s)
    if now > expires_at:
        return AuthFailure(
            403,
            "AccessDenied",
            "Request has expired",
            (
                ("X-Amz-Expires", str(auth.expires_s)),
                ("Expires", expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")),
                ("ServerTime", now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
            ),
        )

    canonical_request = "\n".join(
        [
            method.upper(),
            # S3 encodes each byte except unreserved characters, and keeps '/' in keys.
            quote(path.encode(), safe="/~"),
            _canonical_query(pairs),
            "".join(
                f"{name}:{' '.join(headers.get(name, '').split())}\n"
                for name in auth.signed_headers.split(";")
            ),
            auth.signed_headers,
            "UNSIGNED-PAYLOAD",
        ]
    )
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    string_to_sign = f"{_ALGORITHM}\n{auth.amz_date}\n{auth.scope}\n{digest}"
    key = ("AWS4" + secret_key).encode()
    for part in auth.scope.split("/"):
        key = hmac.digest(key, part.encode(), "sha256")
    expected = hmac.new(key, string_to_sign.encode(), "sha256").hexdigest()
    if hmac.compare_digest(expected.encode(), auth.signature.encode()):
        return None
    return AuthFailure(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        # What AWS returns too: enough to debug a client, nothing that reveals the secret.
        (
            ("AWSAccessKeyId", auth.access_key_id),
            ("StringToSign", string_to_sign),
            ("SignatureProvided", auth.signature),
            ("CanonicalRequest", canonical_request),
        ),
    )


@dataclass(frozen=True)
class _QueryAuth:
    access_key_id: str
    scope: str  # date/region/service/aws4_request
    amz_date: str
    signed_at: datetime
    expires_s: int
    signed_headers: str
    signature: str

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> _QueryAuth:
        """Read the SigV4 query parameters; ValueError says what is wrong, in S3's words."""
        if not all(params.get(name) for name in _REQUIRED_PARAMS):
            raise ValueError(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                "and X-Amz-Expires parameters."
            )
        if params["X-Amz-Algorithm"] != _ALGORITHM:
            raise ValueError(f'X-Amz-Algorithm only supports "{_ALGORITHM}"')
        access_key_id, _, scope = params["X-Amz-Credential"].partition("/")
        scope_parts = scope.split("/")
        if len(scope_parts) != 4 or scope_parts[2:] != ["s3", "aws4_request"]:
            raise ValueError("Error parsing the X-Amz-Credential parameter")
        amz_date = params["X-Amz-Date"]
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
            ) from None
        expires = params["X-Amz-Expires"]
        if not re.fullmatch("[0-9]{1,6}", expires) or not 0 < int(expires) <= _MAX_EXPIRES_S:
            raise ValueError("X-Amz-Expires must be between 1 and 604800 seconds")
        return cls(
            access_key_id=access_key_id,
            scope=scope,
            amz_date=amz_date,
            signed_at=signed_at,
            expires_s=int(expires),
            signed_headers=params["X-Amz-SignedHeaders"],
            signature=params["X-Amz-Signature"],
        )


class PresignedGetGuard:
    """WSGI middleware that refuses GET/HEAD of objects which S3 itself would refuse."""

    def __init__(
        self,
        app: WSGIApplication,
        credentials: Mapping[str, str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._app = app
        self._credentials = dict(credentials)
        self._clock = clock

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = _wsgi_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        failure = None
        if method in ("GET", "HEAD") and _is_object_path(path):
            query_string = _wsgi_text(environ.get("QUERY_STRING", ""))
            if any(name == "X-Amz-Signature" for name, _ in _query_pairs(query_string)):
                failure = verify_query_auth(
                    method=method,
                    path=path,
                    query_string=query_string,
                    headers=_headers(environ),
                    credentials=self._credentials,
                    now=self._clock(),
                )
            elif "HTTP_AUTHORIZATION" not in environ:
                failure = AuthFailure(403, "AccessDenied", "Access Denied")
        if failure is None:
            return self._app(environ, start_response)
        _log.info("refused %s %s: %s", method, path, failure.code)
        request_id = secrets.token_hex(8).upper()
        body = failure.to_xml(request_id)
        start_response(
            f"{failure.status} {HTTPStatus(failure.status).phrase}",
            [
                ("Content-Type", "application/xml"),
                ("Content-Length", str(len(body))),
                ("x-amz-request-id", request_id),
            ],
        )
        return [b""] if method == "HEAD" else [body]


class LocalS3:
    """The embedded endpoint, served by werkzeug in a background thread.

    ``port=0`` picks a free port; `url` is known once `start` returns, and the socket is
    listening by then, so callers need not poll.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, credentials: Mapping[str, str]
    ) -> None:
        self._host = host
        self._port = port
        self._credentials = dict(credentials)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL, e.g. ``http://127.0.0.1:9000``."""
        if self._server is None:
            raise RuntimeError("LocalS3 is not started")
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self._server.server_port}"

    def start(self) -> None:
        """Bind the socket and serve requests in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("LocalS3 is already started")
        app = PresignedGetGuard(create_backend_app("s3"), self._credentials)
        self._server = make_server(
            self._host, self._port, app, threaded=True, request_handler=_RequestHandler
        )
        # A short poll interval keeps stop() quick; shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-s3",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; requests in flight finish on their own threads."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()  # serve_forever closes the socket as it returns
        if thread is not None:
            thread.join()

    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _RequestHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # A pre-signed URL is a bearer token until it expires: log the path, never the query.
        _log.info("%s %s %s", self.command, urlsplit(self.path).path, code)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT; print one line once the socket listens."""
    parser = argparse.ArgumentParser(prog="python -m stream.local_s3", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    args = parser.parse_args(argv)
    access_key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_access_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if (access_key_id is None) != (secret_access_key is None):
        parser.error("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
    if access_key_id is None or secret_access_key is None:
        access_key_id, secret_access_key = DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = LocalS3(args.host, args.port, credentials={access_key_id: secret_access_key})
    server.start()
    try:
        print(f"local S3 listening on {server.url} (access key id {access_key_id})", flush=True)
        stop.wait()
    finally:
        server.stop()


def _is_object_path(path: str) -> bool:
    # Path-style addressing: /bucket/key, with a non-empty key.
    bucket, _, key = path.lstrip("/").partition("/")
    return bool(bucket and key)


def _wsgi_text(value: str) -> str:
    # WSGI hands over request bytes as latin-1 text. S3 keys are UTF-8: bytes that are not can
    # only fail the signature check, so replacing them is safe.
    return value.encode("latin-1").decode("utf-8", "replace")


def _query_pairs(query_string: str) -> list[tuple[str, str]]:
    # Unlike parse_qsl, keeps '+' as a plus sign: SigV4 clients encode spaces as %20.
    pairs = []
    for item in query_string.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((_unquote(name), _unquote(value)))
    return pairs


def _unquote(text: str) -> str:
    return unquote_to_bytes(text).decode("utf-8", "replace")


def _canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted(
        (_quote_component(name), _quote_component(value))
        for name, value in pairs
        if name != "X-Amz-Signature"
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def _quote_component(text: str) -> str:
    return quote(text.encode(), safe="-_.~")


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = _wsgi_text(value)
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.replace("_", "-").lower()] = _wsgi_text(value)
    return headers


if __name__ == "__main__":
    main()
