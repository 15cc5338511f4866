"""The local stack as OS processes: embedded S3, seeds, episode-, stream- and drama-service.

``async with Stack(config) as stack:`` checks that RabbitMQ answers, starts the embedded S3
endpoint (and, as configured, the OTLP sink, the delaying proxy and the player's front), seeds
the three services' data (idempotent), starts the services, waits until each says it is ready,
and on leaving stops everything, the HTTP front first so that no accepted request is lost.
``make run`` (`loadtest.devstack.run`), the end-to-end tests and the benchmarks start it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
import urllib.parse
from collections.abc import Coroutine, Mapping
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from loadtest.devstack.config import (
    LOCAL_S3_KEY,
    READY,
    SERVICES,
    WEB_ROOT,
    StackConfig,
    StackError,
    check_broker,
    free_port,
)
from loadtest.devstack.policies import set_ae_policy
from loadtest.otlp import rotated_set


def _kind(name: str) -> str:
    """``episode2`` is a second episode-service; ``s3`` is itself."""
    return name if name in READY else name.rstrip("0123456789")


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
        await self.start_process(
            "netdelay", "loadtest.devstack.netdelay", *args, "--amqp-url", cfg.amqp_url
        )

    async def start(self) -> None:
        """Every process, side by side where nothing waits on another: the databases' seeds
        while the embedded S3 (and the sink) start, then the three services while the media
        are uploaded (drama-service's probe is /healthz: it waits on no worker; pre-signing
        needs no object)."""
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        check_broker(self.config.amqp_url)
        # An HTTP call, or rabbitmqctl: off the event loop.
        await asyncio.to_thread(set_ae_policy, self.config.amqp_url)
        if self.config.network_proxy:
            await self.start_network_proxy()
        databases = (self._seed_database(service) for service in ("drama", "episode"))
        await _side_by_side(*databases, self._storage())
        services = (self.start_process(service, service) for service in SERVICES)
        await _side_by_side(self._seed_media(), *services)
        if self.config.web_port is not None:
            await self.start_web()

    async def _storage(self) -> None:
        """The embedded S3, and the sink beside it."""
        s3 = self.start_process(
            "s3", "loadtest.devstack.local_s3", "--port", str(self.config.s3_port)
        )
        if not self.sinks_spans:
            await s3
            return
        # This run's spans only: a file that grew over many runs mixes them up.
        for path in rotated_set(self.config.spans_path):
            path.unlink(missing_ok=True)
        sink = self.start_process(
            "sink",
            "loadtest.devstack.sink",
            "--port",
            str(self.config.sink_port),
            "--out",
            str(self.config.spans_path),
        )
        await _side_by_side(s3, sink)

    async def start_web(self) -> None:
        """The player in front of drama-service, and of the sink's trace API if it runs."""
        cfg = self.config
        traces = ["--traces", f"http://127.0.0.1:{cfg.sink_port}"] if self.sinks_spans else []
        await self.start_process(
            "web",
            "loadtest.devstack.front",
            *("--port", str(cfg.web_port), "--root", str(WEB_ROOT), "--api", cfg.base_url),
            *traces,
        )

    @property
    def sinks_spans(self) -> bool:
        """Whether this stack runs its own OTLP sink (see ``StackConfig.sink_port``)."""
        endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT"
        configured = endpoint in self.config.env or endpoint in os.environ
        return self.config.sink_port is not None and not configured

    async def _seed_media(self) -> None:
        """``python -m stream seed``: the media of the first ``media_dramas`` into the embedded
        S3, with the embedded S3's key (this process's environment has none)."""
        env = self.env("stream")
        session = importlib.import_module("aioboto3").Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        cfg = self.config
        args = argparse.Namespace(dramas=cfg.media_dramas, cache=cfg.media_cache, placeholder=False)
        # botocore's errors, ffmpeg's, the file system's: each a failed seed.
        await self._seed("stream", args, session, errors=(Exception,))

    async def _seed_database(self, service: str) -> None:
        """``python -m drama seed`` (or ``episode``): the sample catalogue, or ``seed_dramas``
        generated."""
        args = argparse.Namespace(dramas=self.config.seed_dramas, reset=False)
        await self._seed(service, args, errors=(ValueError, OSError, SQLAlchemyError))

    async def _seed(
        self,
        service: str,
        args: argparse.Namespace,
        *extra: object,
        errors: tuple[type[Exception], ...],
    ) -> None:
        """The service's own seed command, run in this process: a process of its own would
        spend most of its CPU on its imports (~0.9 s a database seed, ~0.45 of the media seed's
        ~0.6 s), and the tests start dozens of stacks. The service's modules are imported when
        a stack starts, not with loadtest."""
        command = importlib.import_module(f"{service}.__main__")
        settings = importlib.import_module(f"{service}.settings").Settings
        try:
            await command.seed(settings.from_env(self.env(service)), args, *extra)
        except errors as exc:
            raise StackError(f"seeding {service} failed: {exc}") from exc

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


async def _side_by_side(*starts: Coroutine[Any, Any, None]) -> None:
    """Run ``starts`` concurrently; the first to fail cancels the rest, and its error (a
    :class:`StackError`, say) is raised as it is, not in a group."""
    try:
        async with asyncio.TaskGroup() as group:
            for start in starts:
                group.create_task(start)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _with_port(url: str, port: int) -> str:
    """``url`` aimed at 127.0.0.1:``port`` (a link of the delaying proxy), all else kept."""
    parts = urllib.parse.urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


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


def _message(line: str) -> str:
    """The message of a JSON log line, or the line itself."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    return f"{record.get('level', '')} {record.get('message', line)}"
