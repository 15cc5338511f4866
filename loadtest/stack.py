"""The local stack as OS processes: embedded S3, seeds, episode-, stream- and drama-service.

``python -m loadtest.stack`` is what ``make run`` runs: it checks that RabbitMQ answers, starts
the embedded S3 endpoint, seeds the three services' data (idempotent), starts the services,
waits until each says it is ready, prints the URLs to try, and on Ctrl-C stops everything,
the HTTP front first so that no accepted request is lost. The end-to-end tests and the
benchmark start the same :class:`Stack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from . import cli, preflight
from .traces import rotated_set

# What each process logs once it serves (the embedded S3 prints it on stdout).
READY = {
    "s3": "local S3 listening on",
    "sink": "OTLP sink listening on",
    "episode": "episode-service ready",
    "stream": "stream-service ready",
    "drama": "drama-service listening on",
    "netdelay": "netdelay ready",
    "web": "player listening on",
}
SERVICES = ("episode", "stream", "drama")
# Local-only key pair shared by the embedded S3 and stream-service; it guards nothing real.
LOCAL_S3_KEY = {"AWS_ACCESS_KEY_ID": "local-s3", "AWS_SECRET_ACCESS_KEY": "local-s3-secret"}
# Shared by every stack of the checkout (make run, the tests): encoding 20 dramas costs ~10 s.
MEDIA_CACHE = Path(__file__).resolve().parents[1] / ".run" / "media-cache"
WEB_ROOT = Path(__file__).resolve().parents[1] / "web" / "dist"  # `make web` builds it


def _kind(name: str) -> str:
    """``episode2`` is a second episode-service; ``s3`` is itself."""
    return name if name in READY else name.rstrip("0123456789")


class StackError(RuntimeError):
    """A process of the stack failed to start, seed or stop."""


@dataclass
class StackConfig:
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    http_port: int = 8080
    s3_port: int = 9000
    workdir: Path = Path(".run")
    drama_database_url: str | None = None  # default: SQLite files in workdir
    episode_database_url: str | None = None
    seed_dramas: int | None = None  # None: the ~20-drama sample catalogue
    media_dramas: int = 20  # the bucket gets HLS samples for the first N dramas
    # Where the seed keeps each drama's ffmpeg encoding for the next stack (None: encode anew).
    media_cache: Path | None = MEDIA_CACHE
    episode_metrics_port: int = 9101
    stream_metrics_port: int = 9102
    env: Mapping[str, str] = field(default_factory=dict)  # extra variables for every service
    # How drama-service calls the workers; with "http" they serve RPC on these ports too.
    transport: Literal["amqp", "http"] = "amqp"
    episode_rpc_port: int = 9111
    stream_rpc_port: int = 9112
    echo: bool = False  # copy the processes' log lines to stdout
    # With no OTEL_EXPORTER_OTLP_ENDPOINT: an OTLP sink on this port keeps the spans in
    # workdir/spans.jsonl for `python -m loadtest analyze` (None: spans are not exported).
    sink_port: int | None = None
    # Route drama-service and the workers through the delaying proxy (loadtest/netdelay.py),
    # so that `python -m loadtest fault --network-delay-ms N` can slow the network.
    network_proxy: bool = False
    # The player (web/dist) and the API on one origin (loadtest/front.py); None: no player.
    web_port: int | None = None

    @property
    def spans_path(self) -> Path:
        return self.workdir / "spans.jsonl"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class Stack:
    """Start with ``async with Stack(config) as stack:``; logs go to ``workdir/NAME.log``."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._logs: dict[str, TextIO] = {}
        self.links: dict[str, tuple[int, str]] = {}  # netdelay: name -> (its port, upstream)

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def env(self, name: str) -> dict[str, str]:
        """The environment of process ``name`` (``episode2`` is a second episode-service)."""
        service = _kind(name)
        cfg = self.config
        workdir = cfg.workdir.resolve()
        env = {
            **os.environ,
            **LOCAL_S3_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AMQP_URL": cfg.amqp_url,
            "HTTP_PORT": str(cfg.http_port),
            "HTTP_HOST": "127.0.0.1",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{cfg.s3_port}",
            "MEDIA_BUCKET": "drama-media",
            "PYTHONUNBUFFERED": "1",
            # A local stack is for experiments: `python -m loadtest fault` reaches its workers.
            "FAULTS_ENABLED": "true",
            **cfg.env,
        }
        if self.sinks_spans:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{cfg.sink_port}"
        elif "OTEL_EXPORTER_OTLP_ENDPOINT" not in env:
            # Nowhere to send spans: make them (trace ids in the logs) but do not export them.
            env.setdefault("OTEL_TRACES_EXPORTER", "none")
        if service in ("episode", "stream"):
            env["METRICS_HOST"] = "127.0.0.1"
            port = cfg.episode_metrics_port if service == "episode" else cfg.stream_metrics_port
            if "METRICS_PORT" not in cfg.env:
                env["METRICS_PORT"] = str(port)
        for variable, value in self._transport_env(service).items():
            if variable not in cfg.env:
                env[variable] = value
        env |= self._proxied(service, env)
        if service in ("drama", "episode"):
            url = cfg.drama_database_url if service == "drama" else cfg.episode_database_url
            env["DATABASE_URL"] = url or f"sqlite+aiosqlite:///{workdir}/{service}.db"
        return env

    def _transport_env(self, service: str) -> dict[str, str]:
        """The variables that make ``service`` take part in the configured transport."""
        cfg = self.config
        if cfg.transport == "amqp":
            return {}
        if service == "drama":
            return {
                "RPC_TRANSPORT": "http",
                "EPISODE_RPC_URL": f"http://127.0.0.1:{cfg.episode_rpc_port}",
                "STREAM_RPC_URL": f"http://127.0.0.1:{cfg.stream_rpc_port}",
            }
        if service in ("episode", "stream"):
            port = cfg.episode_rpc_port if service == "episode" else cfg.stream_rpc_port
            return {"RPC_HTTP_HOST": "127.0.0.1", "RPC_HTTP_PORT": str(port)}
        return {}

    def _proxied(self, service: str, env: Mapping[str, str]) -> dict[str, str]:
        """With the delaying proxy: the addresses of ``service``'s peers, through its links."""
        if not self.links or _kind(service) not in SERVICES:
            return {}
        amqp = self.links["drama-amqp" if service == "drama" else "workers-amqp"][0]
        proxied = {"AMQP_URL": _with_port(env["AMQP_URL"], amqp)}
        if service == "drama" and self.config.transport == "http":
            for name, variable in (("episode", "EPISODE_RPC_URL"), ("stream", "STREAM_RPC_URL")):
                proxied[variable] = _with_port(env[variable], self.links[f"{name}-http"][0])
        return proxied

    async def start_network_proxy(self) -> None:
        """The delaying proxy in front of the broker (and of the workers' HTTP ports)."""
        cfg = self.config
        broker = urllib.parse.urlsplit(cfg.amqp_url)
        upstreams = {
            "drama-amqp": f"{broker.hostname or '127.0.0.1'}:{broker.port or 5672}",
            "workers-amqp": f"{broker.hostname or '127.0.0.1'}:{broker.port or 5672}",
        }
        if cfg.transport == "http":
            upstreams["episode-http"] = f"127.0.0.1:{cfg.episode_rpc_port}"
            upstreams["stream-http"] = f"127.0.0.1:{cfg.stream_rpc_port}"
        self.links = {name: (free_port(), upstream) for name, upstream in upstreams.items()}
        links = [f"{name}={port}:{up}" for name, (port, up) in self.links.items()]
        args = [arg for link in links for arg in ("--link", link)]
        await self.start_process("netdelay", "loadtest.netdelay", *args, "--amqp-url", cfg.amqp_url)

    async def start(self) -> None:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        check_broker(self.config.amqp_url)
        if self.config.network_proxy:
            await self.start_network_proxy()
        await self.start_process("s3", "stream.local_s3", "--port", str(self.config.s3_port))
        if self.sinks_spans:
            # This run's spans only: a file that grew over many runs mixes them up.
            for path in rotated_set(self.config.spans_path):
                path.unlink(missing_ok=True)
            await self.start_process(
                "sink",
                "loadtest.sink",
                "--port",
                str(self.config.sink_port),
                "--out",
                str(self.config.spans_path),
            )
        await self.seed()
        for service in SERVICES:
            await self.start_process(service, service)
        if self.config.web_port is not None:
            await self.start_web()

    async def start_web(self) -> None:
        """The player in front of drama-service, and of the sink's trace API if it runs."""
        cfg = self.config
        traces = ["--traces", f"http://127.0.0.1:{cfg.sink_port}"] if self.sinks_spans else []
        await self.start_process(
            "web",
            "loadtest.front",
            *("--port", str(cfg.web_port), "--root", str(WEB_ROOT), "--api", cfg.base_url),
            *traces,
        )

    @property
    def sinks_spans(self) -> bool:
        """Whether this stack runs its own OTLP sink (see ``StackConfig.sink_port``)."""
        endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT"
        configured = endpoint in self.config.env or endpoint in os.environ
        return self.config.sink_port is not None and not configured

    async def seed(self) -> None:
        dramas = (
            [] if self.config.seed_dramas is None else ["--dramas", str(self.config.seed_dramas)]
        )
        commands = {
            "drama": ["drama", "seed", *dramas],
            "episode": ["episode", "seed", *dramas],
            "stream": ["stream", "seed", "--dramas", str(self.config.media_dramas)],
        }
        if self.config.media_cache is not None:
            commands["stream"] += ["--cache", str(self.config.media_cache)]
        await asyncio.gather(*(self._seed_one(name, args) for name, args in commands.items()))

    async def _seed_one(self, service: str, args: list[str]) -> None:
        log_path = self.config.workdir / f"seed-{service}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", *args, env=self.env(service), stdout=log, stderr=log
            )
            code = await process.wait()
        if code != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise StackError(f"seeding {service} failed (exit {code}):\n{tail}")

    async def start_process(
        self, name: str, module: str, *args: str, env: Mapping[str, str] | None = None
    ) -> None:
        """Start ``python -m module`` and wait until it is ready: its port accepts (the
        embedded S3, the sink, the player), its ``/readyz`` says 200 (a worker: consuming; and
        its RPC port accepts when it serves one), its ``/healthz`` answers (drama-service), or,
        for netdelay, which has no probe for its control queue, it prints that it is ready.

        ``env`` adds variables to the process's environment (say, another ``HTTP_PORT``).
        """
        self._ready[name] = asyncio.Event()
        self._logs[name] = (self.config.workdir / f"{name}.log").open("a", encoding="utf-8")
        environment = {**self.env(name), **(env or {})}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the rest in order
        )
        self.processes[name] = process
        self._readers[name] = asyncio.create_task(self._read(name, process))
        exited = asyncio.create_task(process.wait())
        ready = asyncio.create_task(self._until_ready(name, args, environment))
        done, _ = await asyncio.wait({exited, ready}, timeout=30, return_when="FIRST_COMPLETED")
        exited.cancel()
        ready.cancel()
        if ready not in done:
            state = "exited" if exited in done else "did not get ready in 30 s"
            raise StackError(f"{name} {state}; see {self.config.workdir / name}.log")

    async def _until_ready(self, name: str, args: tuple[str, ...], env: Mapping[str, str]) -> None:
        """Return once process ``name`` (started with ``args`` and ``env``) is ready."""
        kind = _kind(name)
        probes: list[tuple[int, str | None]]  # (port, None: it accepts; a path: GET is 200)
        if kind == "netdelay":
            await self._ready[name].wait()
            return
        if kind in ("s3", "sink", "web"):
            probes = [(int(args[args.index("--port") + 1]), None)]
        elif kind == "drama":
            probes = [(int(env["HTTP_PORT"]), "/healthz")]
        else:  # a worker: consuming (/readyz), and taking RPC over HTTP if it serves it
            probes = [(int(env["METRICS_PORT"]), "/readyz")]
            if "RPC_HTTP_PORT" in env:
                probes.append((int(env["RPC_HTTP_PORT"]), None))
        for port, path in probes:
            # Another process's port: no event of ours to await, a probe as a kubelet's.
            while not await _answers(port, path):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # start_process bounds the wait

    async def _read(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        log = self._logs[name]
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            log.write(line + "\n")
            log.flush()
            if READY[_kind(name)] in line:
                self._ready[name].set()
            if self.config.echo and name != "s3":  # the S3 access log stays in its file
                print(f"{name:>8} | {_message(line)}", flush=True)

    async def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal a process and wait for it; kill it if it outlives ``timeout``."""
        process = self.processes.pop(name, None)
        if process is None:
            return 0
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        reader = self._readers.pop(name, None)
        if reader is not None:
            await reader
        self._logs.pop(name).close()
        return process.returncode if process.returncode is not None else -1

    async def stop(self) -> None:
        # The front first: it drains its requests while the workers still answer them.
        order = ("web", "drama", "episode", "stream", "netdelay", "s3", "sink")
        for name in sorted(self.processes, key=lambda n: order.index(_kind(n))):
            await self.stop_process(name)


async def _answers(port: int, path: str | None) -> bool:
    """Whether 127.0.0.1:``port`` accepts a connection and, with ``path``, answers
    ``GET path`` with 200."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        if path is None:
            return True
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status = await reader.readline()
        return status.split(b" ")[1:2] == [b"200"]
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _with_port(url: str, port: int) -> str:
    """``url`` aimed at 127.0.0.1:``port`` (a link of the delaying proxy), all else kept."""
    parts = urllib.parse.urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def free_port() -> int:
    """A port nothing listens on now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def vhost(name: str) -> Iterator[str]:
    """A RabbitMQ virtual host for the block (guest may use it), through rabbitmqctl: stacks
    on one broker kept apart, since every stack uses the same queue and exchange names."""
    run = ["rabbitmqctl", "-q"]
    subprocess.run([*run, "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        [*run, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run([*run, "delete_vhost", name], check=False, capture_output=True)


def check_broker(amqp_url: str) -> None:
    """Raise a one-line :class:`StackError` if nothing listens at the broker's address."""
    parts = urllib.parse.urlsplit(amqp_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        raise StackError(
            f"RabbitMQ is not reachable at {host}:{port}: start it with "
            "'rabbitmq-server -detached' (Debian package rabbitmq-server) or set AMQP_URL"
        ) from None


def venv_python() -> str:
    """This interpreter as a command that works where it is printed: the venv's, relative to
    the current directory when it is inside it (``.venv/bin/python``)."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable)


def _message(line: str) -> str:
    """The message of a JSON log line, or the line itself."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    return f"{record.get('level', '')} {record.get('message', line)}"


async def _run(config: StackConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    python = venv_python()
    async with Stack(config) as stack:
        base = config.base_url
        traces = (
            f"Traces: {config.spans_path} ({python} -m loadtest analyze --input "
            f"{config.spans_path} --last 5m)"
            if stack.sinks_spans
            else "Traces: sent to OTEL_EXPORTER_OTLP_ENDPOINT"
            if "OTEL_EXPORTER_OTLP_ENDPOINT" in os.environ
            else "Traces: not exported"
        )
        player = (
            f"The player: http://127.0.0.1:{config.web_port}/ (the API on the same origin)\n"
            if config.web_port is not None
            else ""
        )
        print(
            f"\ndrama-streaming is up ({time.monotonic() - started:.1f} s).\n{player}Try:\n"
            f"  curl {base}/dramas/1\n"
            f"  curl '{base}/dramas?limit=5'\n"
            f"  curl {base}/openapi.json\n"
            f"  curl {base}/readyz\n"
            f"  curl {base}/metrics   (workers: :{config.episode_metrics_port}/metrics, "
            f":{config.stream_metrics_port}/metrics)\n"
            f"Load: {python} -m loadtest load --url {base} --duration 10 --run-id try1\n"
            f"Inject a fault: {python} -m loadtest fault --method stream.presign --delay-ms 50\n"
            + (
                f"Slow the network: {python} -m loadtest fault --network-delay-ms 5\n"
                if stack.links
                else ""
            )
            + f"{traces}\n"
            f"Logs: {config.workdir}/*.log. Ctrl-C stops everything.\n",
            flush=True,
        )
        # A service that dies is logged and started again (loadtest/supervise.py).
        from .supervise import supervise  # noqa: PLC0415 - it imports this module

        keeper = asyncio.create_task(supervise(stack, SERVICES))
        await stop.wait()
        print("stopping...", flush=True)
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


def _ports(config: StackConfig, sinks: bool) -> list[preflight.Port]:
    ports = [
        preflight.Port(
            config.http_port, "drama-service's HTTP", "--http-port (make run HTTP_PORT=)"
        ),
        preflight.Port(config.s3_port, "the embedded S3", "--s3-port"),
        preflight.Port(config.episode_metrics_port, "episode metrics", "--episode-metrics-port"),
        preflight.Port(config.stream_metrics_port, "stream metrics", "--stream-metrics-port"),
    ]
    if sinks and config.sink_port:
        ports.append(preflight.Port(config.sink_port, "the OTLP sink", "--sink-port"))
    if config.web_port:
        ports.append(preflight.Port(config.web_port, "the player", "--web-port"))
    if config.transport == "http":
        ports.append(preflight.Port(config.episode_rpc_port, "episode RPC over HTTP", "(fixed)"))
        ports.append(preflight.Port(config.stream_rpc_port, "stream RPC over HTTP", "(fixed)"))
    return ports


def _preflight(config: StackConfig) -> list[str]:
    sinks = Stack(config).sinks_spans
    urls = [config.drama_database_url, config.episode_database_url]
    return asyncio.run(
        preflight.problems(config.amqp_url, _ports(config, sinks), config.workdir, urls)
    )


def parser() -> cli.Parser:
    parser = cli.Parser("python -m loadtest.stack", __doc__)
    add = parser.add_argument
    add("--http-port", type=cli.PORT, default=8080, help="drama-service's port")
    add("--s3-port", type=cli.PORT, default=9000, help="the embedded S3's port")
    add("--episode-metrics-port", type=cli.PORT, default=9101, help="episode /metrics port")
    add("--stream-metrics-port", type=cli.PORT, default=9102, help="stream /metrics port")
    add("--workdir", type=Path, default=Path(".run"), help="logs, SQLite files and spans")
    add("--dramas", type=cli.integer(1, 1_000_000), default=None, help="seed a generated catalogue")
    add(
        "--transport",
        choices=("amqp", "http"),
        default="amqp",
        help="how drama-service calls the workers (http: they serve RPC on :9111 and :9112)",
    )
    add(
        "--sink-port",
        type=cli.PORT_OR_ZERO,
        default=4318,
        help="without OTEL_EXPORTER_OTLP_ENDPOINT, keep the spans with an OTLP sink on this "
        "port in WORKDIR/spans.jsonl (0: do not export spans)",
    )
    add(
        "--no-network-proxy",
        dest="network_proxy",
        action="store_false",
        help="connect the services directly, without the delaying proxy that "
        "`python -m loadtest fault --network-delay-ms` sets (default: through the proxy)",
    )
    add(
        "--web-port",
        type=cli.PORT_OR_ZERO,
        default=8088,
        help="serve the player (web/dist) and the API together on this port (0: no player)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = StackConfig(
        amqp_url=os.environ.get("AMQP_URL", StackConfig.amqp_url),
        http_port=args.http_port,
        s3_port=args.s3_port,
        episode_metrics_port=args.episode_metrics_port,
        stream_metrics_port=args.stream_metrics_port,
        workdir=args.workdir,
        seed_dramas=args.dramas,
        transport=args.transport,
        sink_port=args.sink_port or None,
        network_proxy=args.network_proxy,
        web_port=args.web_port or None,
        echo=True,
        env={
            # On a laptop every request's line is wanted, with its trace id (services: errors).
            "REQUEST_LOG": os.environ.get("REQUEST_LOG") or "sampled",
            # Spans exported within 0.2 s (SDK default 5 s): the player's waterfall waits less.
            "OTEL_BSP_SCHEDULE_DELAY": os.environ.get("OTEL_BSP_SCHEDULE_DELAY") or "200",
        },
    )
    debug = os.environ.get("LOG_LEVEL", "").upper() == "DEBUG"
    if not debug:  # aiormq logs a failed connect at length; the check's one line says it
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        found = _preflight(config)
        for problem in found:
            print(f"make run: {problem}", file=sys.stderr)
        if found:
            return 1
        asyncio.run(_run(config))
    except StackError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        print(f"make run: {exc!r} (LOG_LEVEL=DEBUG shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
