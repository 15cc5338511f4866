"""AWS Signature Version 4 as S3 checks it, for the embedded endpoint (loadtest.devstack.local_s3).

Two ways to sign: query auth (a pre-signed URL: ``X-Amz-Signature`` in the query, payload
``UNSIGNED-PAYLOAD``) and header auth (``Authorization: AWS4-HMAC-SHA256 Credential=...,
SignedHeaders=..., Signature=...``, what SDKs send). Either way the canonical request holds the
method, so a URL signed for GET cannot PUT or DELETE.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote_to_bytes
from xml.sax.saxutils import escape

__all__ = ["AuthFailure", "query_pairs", "verify_header_auth", "verify_query_auth"]

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
    pairs = query_pairs(query_string)
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

    return _check(
        method, path, _canonical_query(pairs), headers, auth, secret_key, "UNSIGNED-PAYLOAD"
    )


def verify_header_auth(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    now: datetime,
) -> AuthFailure | None:
    """Check a request signed in its ``Authorization`` header (what SDKs send); ``None`` means
    it may be served. Arguments as for :func:`verify_query_auth`."""
    match = _AUTHORIZATION.fullmatch(headers.get("authorization", "").strip())
    if match is None:
        return AuthFailure(
            400, "AuthorizationHeaderMalformed", "The authorization header is malformed"
        )
    access_key_id, _, scope = match["credential"].partition("/")
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return AuthFailure(
            403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
        )
    secret_key = credentials.get(access_key_id)
    if secret_key is None:
        return AuthFailure(
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            (("AWSAccessKeyId", access_key_id),),
        )
    if abs(now - signed_at) > _MAX_SKEW:
        return AuthFailure(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )
    auth = _QueryAuth(
        access_key_id=access_key_id,
        scope=scope,
        amz_date=amz_date,
        signed_at=signed_at,
        expires_s=0,
        signed_headers=match["signed_headers"],
        signature=match["signature"],
    )
    # The payload hash is the one the client signed (S3 also checks it against the body).
    payload = headers.get("x-amz-content-sha256") or "UNSIGNED-PAYLOAD"
    canonical_query = _canonical_query(query_pairs(query_string), keep_signature=True)
    return _check(method, path, canonical_query, headers, auth, secret_key, payload)


_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed_headers>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]+)"
)
_MAX_SKEW = timedelta(minutes=15)  # S3's RequestTimeTooSkewed bound


def _check(  # noqa: PLR0917 - the parts of one canonical request, in its order
    method: str,
    path: str,
    canonical_query: str,
    headers: Mapping[str, str],
    auth: _QueryAuth,
    secret_key: str,
    payload: str,
) -> AuthFailure | None:
    canonical_request = "\n".join(
        [
            method.upper(),
            # S3 encodes each byte except unreserved characters, and keeps '/' in keys.
            quote(path.encode(), safe="/~"),
            canonical_query,
            "".join(
                f"{name}:{' '.join(headers.get(name, '').split())}\n"
                for name in auth.signed_headers.split(";")
            ),
            auth.signed_headers,
            payload,
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


def query_pairs(query_string: str) -> list[tuple[str, str]]:
    """The decoded name-value pairs of a query string, in order."""
    # Unlike parse_qsl, keeps '+' as a plus sign: SigV4 clients encode spaces as %20.
    pairs = []
    for item in query_string.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((_unquote(name), _unquote(value)))
    return pairs


def _unquote(text: str) -> str:
    return unquote_to_bytes(text).decode("utf-8", "replace")


def _canonical_query(pairs: Iterable[tuple[str, str]], *, keep_signature: bool = False) -> str:
    encoded = sorted(
        (_quote_component(name), _quote_component(value))
        for name, value in pairs
        if keep_signature or name != "X-Amz-Signature"
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def _quote_component(text: str) -> str:
    return quote(text.encode(), safe="-_.~")
