"""An embedded S3 endpoint for `make run` and tests: moto's S3 behind a pre-signed URL guard.

moto stores objects and speaks the S3 API well enough for aioboto3, but it serves any GET: it
checks neither the expiry nor the signature of a pre-signed URL, and it serves objects to anonymous
callers. The URLs that stream-service hands out are the point of this project, so a WSGI middleware
checks what AWS would check before moto sees any request, whatever its method:

- SigV4 query auth (``X-Amz-Signature``): parameters well formed (else 400
  ``AuthorizationQueryParametersError``), access key id known (else 403 ``InvalidAccessKeyId``),
  ``X-Amz-Date`` + ``X-Amz-Expires`` not passed (else 403 ``AccessDenied``, "Request has
  expired"), signature recomputed with the endpoint's secret key (else 403
  ``SignatureDoesNotMatch``);
- SigV4 header auth (``Authorization``, what the SDKs send: seeding, stream-service): the same
  checks, the date within 15 minutes (else 403 ``RequestTimeTooSkewed``);
- no auth at all: 403 ``AccessDenied``, for objects, bucket operations and writes alike.

The signature covers the method, so a pre-signed GET URL cannot PUT or DELETE (stream/sigv4.py).

Run it with ``python -m loadtest.devstack.local_s3 [--host 127.0.0.1] [--port 9000]``; the key
pair comes from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (both or neither; neither means
``DEFAULT_ACCESS_KEY_ID``/``DEFAULT_SECRET_ACCESS_KEY``). Tests start a `LocalS3` on port 0 in a
thread. moto keeps objects in process-global backends, so all endpoints of one process share them.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from stream.sigv4 import AuthFailure, query_pairs, verify_header_auth, verify_query_auth

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

# Local-only credentials, for a plain `python -m loadtest.devstack.local_s3`: they guard nothing.
DEFAULT_ACCESS_KEY_ID = "local-s3"
DEFAULT_SECRET_ACCESS_KEY = "local-s3-secret"  # noqa: S105


class PresignedGetGuard:
    """WSGI middleware that refuses every request S3 itself would refuse: unsigned, wrongly
    signed, expired, or signed for another method."""

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
        query_string = _wsgi_text(environ.get("QUERY_STRING", ""))
        # Every request, whatever its method or path, is signed one way or the other, and the
        # signature covers the method: a URL signed for GET cannot PUT or DELETE.
        verify = verify_header_auth if "HTTP_AUTHORIZATION" in environ else None
        if any(name == "X-Amz-Signature" for name, _ in query_pairs(query_string)):
            verify = verify_query_auth
        failure = (
            AuthFailure(403, "AccessDenied", "Access Denied")
            if verify is None
            else verify(
                method=method,
                path=path,
                query_string=query_string,
                headers=_headers(environ),
                credentials=self._credentials,
                now=self._clock(),
            )
        )
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
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.devstack.local_s3", description=__doc__
    )
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
