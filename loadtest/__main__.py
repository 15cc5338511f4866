"""``python -m loadtest <command>``: the project's load, analysis and benchmark tools.

Each command is a module of this package with its own ``main(argv)`` and ``--help``; it is
imported only when asked for, so ``analyze`` does not pay for the stack's imports.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "analyze": ("loadtest.analysis.command", "critical path and latency breakdown of traces"),
    "bench": ("loadtest.bench.command", "the benchmark behind make bench"),
    "compare": ("loadtest.bench.compare", "the same request over the queue and over HTTP"),
    "fault": ("loadtest.load.fault", "inject or clear a fault in the running workers"),
    "load": ("loadtest.load.command", "open- or closed-loop load on the HTTP API"),
    "scale": ("loadtest.bench.scale", "cost per request as the catalogue and time grow"),
    "sink": (
        "loadtest.devstack.sink",
        "an OTLP/HTTP receiver that stores spans as OTLP-JSON lines",
    ),
    "stack": ("loadtest.devstack.run", "the local stack behind make run"),
}


def usage() -> str:
    lines = ["usage: python -m loadtest <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_module, help_) in COMMANDS.items()]
    lines += ["", "python -m loadtest <command> --help: the command's options and their defaults"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    code: int = module.main(rest)
    return code


if __name__ == "__main__":
    sys.exit(main())
