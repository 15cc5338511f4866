"""Process plumbing every service's ``__main__`` shares: logging setup and the stop signal."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from ._env import Env, VariableListing
from ._errors import ConfigError
from ._telemetry import REQUEST_LOG_CHOICES, configure_tracing, set_request_log

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                # An extra never replaces a core field.
                line[key if key not in line else f"extra.{key}"] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        try:
            return json.dumps(line, default=str)
        except (TypeError, ValueError):  # an extra JSON cannot hold (non-str keys, cycles)
            return json.dumps({k: v if isinstance(v, str) else repr(v) for k, v in line.items()})


def configure_logging(service: str, level: str = "INFO") -> None:
    """Log to stderr: readable text on a terminal, JSON lines otherwise (for log shippers)."""
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aio-pika logs every reconnect attempt at length; its warnings are enough.
    logging.getLogger("aio_pika").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("aiormq").setLevel(max(root.level, logging.WARNING))


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so that a service can drain before it exits."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, event.set)
    return event


def redact_url(url: str) -> str:
    """``amqp://user:secret@host/`` -> ``amqp://user:***@host/``, for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class _ServiceSettings(Protocol):
    @property
    def log_level(self) -> str: ...


S = TypeVar("S", bound=_ServiceSettings)


def _process_settings(env: Env) -> tuple[str, str, int]:
    """What every service's process reads beside its settings: event loop, request log, GC."""
    return (
        env.choice("EVENT_LOOP", "uvloop", ("uvloop", "asyncio")),
        env.choice("REQUEST_LOG", "errors", REQUEST_LOG_CHOICES),
        env.integer("GC_GEN0_THRESHOLD", 20_000, low=0, high=10_000_000),
    )


def environment_help(settings: Callable[[Mapping[str, str]], object]) -> str:
    """The variables ``settings`` and the process read, with defaults: ``--help``'s epilog."""
    listing = VariableListing()
    settings(listing)
    _process_settings(Env(listing))
    lines = ["environment variables (default; allowed values):"]
    for variable in listing.variables.values():
        default = variable.default or "unset"
        allowed = f"; {variable.allowed}" if variable.allowed else ""
        lines.append(f"  {variable.name:<24} {default}{allowed}")
    lines.append(
        f"  {'OTEL_*':<24} the OpenTelemetry SDK's: OTEL_EXPORTER_OTLP_ENDPOINT, "
        "OTEL_TRACES_SAMPLER..."
    )
    return "\n".join(lines)


def service_main(
    *,
    service: str,
    description: str,
    settings: Callable[[Mapping[str, str]], S],
    serve: Callable[[S, TracerProvider | None], object],
    seed: Callable[[S, argparse.Namespace], Coroutine[Any, Any, None]],
    seed_help: str,
    seed_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    """The ``__main__`` of a service: ``python -m <pkg>`` serves, ``python -m <pkg> seed`` seeds.

    Reads the settings once from ``os.environ`` (a bad variable: one line on stderr, exit 2),
    sets up logging, and for serving sets up tracing from the ``OTEL_*`` variables and flushes
    it on the way out. ``serve`` blocks until the service has stopped. ``--help`` lists the
    variables ``settings`` reads, with their defaults.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m {service.split('-', maxsplit=1)[0]}",
        description=description.replace("``", ""),  # reST literals read as plain text
        epilog=environment_help(settings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", title="commands (none: serve)")
    seeder = commands.add_parser(
        "seed",
        help=seed_help,
        description=seed_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if seed_arguments is not None:
        seed_arguments(seeder)
    args = parser.parse_args(argv)
    try:
        loaded = settings(os.environ)
        configure_logging(service, loaded.log_level)
        event_loop, request_log, gc_threshold = _process_settings(Env(os.environ))
        use_event_loop(event_loop)
        set_request_log(request_log)
        if args.command == "seed":
            asyncio.run(seed(loaded, args))
            return 0
        provider = configure_tracing(service, os.environ)
        tune_gc(gc_threshold)
    except ConfigError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 2
    try:
        serve(loaded, provider)
    finally:
        if provider is not None:
            provider.shutdown()  # flush the spans still batched
    return 0


def tune_gc(gen0_threshold: int) -> None:
    """Fewer garbage collections: what is alive after start-up (modules, settings, the SDK) is
    frozen out of every later collection, and the youngest generation is collected every
    ``gen0_threshold`` allocations instead of Python's 700 (0 leaves Python's settings).

    Every span, message and request allocates; with Python's threshold the collector ran
    often enough to cost throughput, traced or not (docs/performance.md). Garbage
    without cycles is freed at once either way; only cyclic garbage waits a little longer.
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def use_event_loop(kind: str) -> None:
    """Make every event loop this process creates a uvloop one, or leave asyncio's."""
    if kind == "uvloop":
        import uvloop  # noqa: PLC0415 - only when asked for

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
