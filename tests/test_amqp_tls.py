"""AMQP over TLS against a RabbitMQ node of the test's own: an RPC round trip through the
services' settings (AMQP_URL amqps:// + AMQP_CA_FILE), and a broker certificate from another CA
refused. The node is this machine's RabbitMQ started a second time with its own name, data and
log directories, config file, TLS port and distribution port (all free ports), no plugins and no
plain listener; the shared broker on 5672 is not touched."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.rpc import AmqpRpcClient, RpcUnavailable, RpcWorker
from broker.service import ConfigError, Env, WorkerSettings
from broker.service import amqp_url as checked_amqp_url
from tests.conftest import free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # Debian's rabbitmq-server, as .ci/run installs it
# The module's broker fixture takes seconds: its tests share one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("amqp_tls")


@dataclass(frozen=True)
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def make(cls, name: str) -> Ca:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            _builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(self, directory: Path) -> tuple[Path, Path]:
        """A server certificate for localhost and 127.0.0.1: (certificate file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            _builder(subject, self.cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / "server.crt", directory / "server.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_file, key_file

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
    )


@dataclass(frozen=True)
class TlsBroker:
    port: int
    ca_file: Path  # the CA that signed the broker's certificate
    other_ca_file: Path  # a CA that did not

    def url(self) -> str:
        return f"amqps://guest:guest@localhost:{self.port}/"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A RabbitMQ node with only a TLS listener on 127.0.0.1, for this module; stopped and its
    directories removed afterwards."""
    assert (RABBITMQ_BIN / "rabbitmq-server").exists(), "rabbitmq-server is missing (.ci/run)"
    base = tmp_path_factory.mktemp("rabbitmq-tls")
    ca = Ca.make("drama-streaming test CA")
    cert_file, key_file = ca.issue(base)
    ca_file = ca.write(base / "ca.crt")
    other_ca_file = Ca.make("another CA").write(base / "other-ca.crt")
    port, dist_port = free_port(), free_port()
    (base / "rabbitmq.conf").write_text(
        "listeners.tcp = none\n"
        f"listeners.ssl.1 = 127.0.0.1:{port}\n"
        f"ssl_options.cacertfile = {ca_file}\n"
        f"ssl_options.certfile = {cert_file}\n"
        f"ssl_options.keyfile = {key_file}\n"
        "ssl_options.verify = verify_none\n"
        "ssl_options.fail_if_no_peer_cert = false\n"
    )
    (base / "enabled_plugins").write_text("[].\n")  # no management/prometheus ports
    (base / "rabbitmq-env.conf").write_text("")  # not the system's (it names the shared node)
    cookie = base / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex)
    cookie.chmod(0o400)
    node = f"tls-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "HOME": str(base),  # the Erlang cookie of this node and its CLI
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    log = (base / "server.log").open("w")
    # In its own directory: a node that dies writes its crash dumps (MnesiaCore.*) there.
    server = subprocess.Popen(
        [RABBITMQ_BIN / "rabbitmq-server"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base
    )
    ctl = [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", node]
    try:
        started = subprocess.run(
            [*ctl, "wait", str(base / "rabbitmq.pid"), "--timeout", "120"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert started.returncode == 0, (base / "server.log").read_text()[-3000:]
        yield TlsBroker(port, ca_file, other_ca_file)
    finally:
        subprocess.run([*ctl, "stop"], env=env, capture_output=True, check=False)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


class Ask(msgspec.Struct):
    value: int


async def echo(ask: Ask) -> Ask:
    return ask


def settings_url(url: str, ca_file: Path) -> str:
    """The URL a worker service connects with, as its settings read the environment."""
    env = Env({"AMQP_URL": url, "AMQP_CA_FILE": str(ca_file)})
    return WorkerSettings.from_env(env, prefetch=4, metrics_port=9).amqp_url


@pytest.mark.integration
async def test_rpc_round_trip_over_amqps_verified_by_the_ca_bundle(tls_broker: TlsBroker) -> None:
    url = settings_url(tls_broker.url(), tls_broker.ca_file)
    worker = RpcWorker(url, "tls.echo")
    worker.register("tls.echo", Ask, echo)
    async with worker, AmqpRpcClient(url, timeout=10) as client:
        assert await client.call("tls.echo", Ask(21), Ask) == Ask(21)


@pytest.mark.integration
async def test_a_broker_certificate_from_another_ca_is_refused(tls_broker: TlsBroker) -> None:
    url = settings_url(tls_broker.url(), tls_broker.other_ca_file)
    with pytest.raises((ConnectionError, RpcUnavailable)) as raised:
        async with AmqpRpcClient(url, timeout=10):
            pass
    causes = []
    exc: BaseException | None = raised.value
    while exc is not None:
        causes.append(exc)
        exc = exc.__cause__ or exc.__context__
    verify = [c for c in causes if isinstance(c, ssl.SSLCertVerificationError)]
    assert verify, causes
    assert "certificate verify failed" in str(verify[0])


def test_plain_amqp_is_refused_off_loopback(tmp_path: Path) -> None:
    assert checked_amqp_url("amqp://u:p@127.0.0.1:5672/") == "amqp://u:p@127.0.0.1:5672/"
    assert checked_amqp_url("amqp://u:p@localhost/") == "amqp://u:p@localhost/"
    with pytest.raises(ConfigError, match="clear text; use amqps://"):
        checked_amqp_url("amqp://u:p@rabbitmq.drama-streaming.svc:5672/")
    with pytest.raises(ConfigError, match="AMQP_CA_FILE is set but AMQP_URL is plain"):
        checked_amqp_url("amqp://u:p@127.0.0.1/", str(tmp_path))
    with pytest.raises(ConfigError, match="is not a readable file"):
        checked_amqp_url("amqps://u:p@broker/", str(tmp_path / "missing.pem"))
    ca = Ca.make("x").write(tmp_path / "ca.pem")
    assert checked_amqp_url("amqps://u:p@broker:5671/v?heartbeat=5", str(ca)) == (
        f"amqps://u:p@broker:5671/v?heartbeat=5&cafile={str(ca).replace('/', '%2F')}"
    )
    # Without a bundle, amqps:// is verified against the system's trust store.
    assert checked_amqp_url("amqps://u:p@broker/") == "amqps://u:p@broker/"
    with pytest.raises(ConfigError, match="no_verify_ssl would accept any certificate"):
        checked_amqp_url("amqps://u:p@broker/?no_verify_ssl=1")
