"""The broker URL a service connects with: TLS verified against a CA bundle, or plain AMQP on
loopback only.

``AMQP_URL`` names the broker; ``AMQP_CA_FILE`` (PEM) is the bundle its certificate must chain to
(cert-manager's ``ca.crt`` in Kubernetes, compose's generated CA). aiormq builds the connection's
SSL context from the URL's ``cafile`` query parameter (``ssl.create_default_context(cafile=...)``:
the certificate chain and the host name are verified); without ``AMQP_CA_FILE`` an ``amqps://``
URL is verified against the system's trust store (Amazon MQ's public certificates). A plain
``amqp://`` URL is refused unless its host is a loopback address (``make run``, the tests): the
credentials and the messages would cross the network in clear text.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path

from broker.errors import ConfigError
from broker.service.env import Env

__all__ = ["amqp_url", "amqp_url_from_env"]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def amqp_url(url: str, ca_file: str | None = None) -> str:
    """``url`` checked, with ``ca_file`` as the CA bundle that verifies the broker (amqps only).

    Raises ConfigError naming the variable when the pair is unsafe or inconsistent.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    query = urllib.parse.parse_qsl(parts.query)
    if parts.scheme == "amqp":
        if ca_file:
            raise ConfigError("AMQP_CA_FILE is set but AMQP_URL is plain amqp://: use amqps://")
        if not _is_loopback(host):
            raise ConfigError(
                f"AMQP_URL: plain amqp:// to {host!r} would send credentials in clear text; "
                "use amqps:// (plain AMQP is for a loopback broker only)"
            )
        return url
    if parts.scheme != "amqps":  # not a broker URL at all: aio-pika refuses it at connect
        if ca_file:
            raise ConfigError("AMQP_CA_FILE is set but AMQP_URL is not amqps://")
        return url
    if any(name == "no_verify_ssl" for name, _ in query):
        raise ConfigError("AMQP_URL: no_verify_ssl would accept any certificate; set AMQP_CA_FILE")
    if not ca_file:
        return url  # verified against the system's trust store
    if not Path(ca_file).is_file():
        raise ConfigError(f"AMQP_CA_FILE {ca_file!r} is not a readable file")
    if any(name == "cafile" for name, _ in query):
        raise ConfigError("set the CA bundle with AMQP_CA_FILE, not in AMQP_URL's query")
    query.append(("cafile", ca_file))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def amqp_url_from_env(env: Env) -> str:
    """``AMQP_URL`` and ``AMQP_CA_FILE`` as :func:`amqp_url` combines them."""
    return amqp_url(env.text("AMQP_URL", DEFAULT_AMQP_URL), env.text("AMQP_CA_FILE", "") or None)
