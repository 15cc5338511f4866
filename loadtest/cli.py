"""What every ``python -m loadtest`` command shares on its command line: checked values, plain help.

Each option's value is checked by its ``type=`` function when the command line is parsed, so a
bad value stops the command before it connects, schedules or writes anything: one line naming
the option, the allowed range and the value given, exit status 2. The help shows each option's
default and reads as plain text (the module docstrings it is made of are written in reST).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

T = TypeVar("T")

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :class:`Report` -> Report
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain(text: str) -> str:
    """reST markup out of a docstring, for ``--help``: roles, literals, ``::`` blocks."""
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(lambda m: m[1] or m[2], text)
    return re.sub(r"::\n", ":\n", text).replace(" ::\n", "\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; the description keeps its own line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # No "(default: None)", nor a second default where the help says what it is.
        if action.default in (None, False, []) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (not usage, then the error), exit 2."""

    def __init__(self, prog: str, doc: str, **kwargs: object) -> None:
        super().__init__(
            prog=prog,
            description=plain(doc),
            formatter_class=HelpFormatter,
            **kwargs,  # type: ignore[arg-type]
        )

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (--help lists the options)\n")


def _fail(what: str, text: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")


def _range(low: float | None, high: float | None, low_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return " and ".join(parts)


def number(
    low: float | None = None, high: float | None = None, *, low_open: bool = False
) -> Callable[[str], float]:
    """A finite number within ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    what = f"a number {_range(low, high, low_open)}".rstrip()

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            _fail(what, text)
        too_low = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            _fail(what, text)
        return value

    parse.__name__ = "number"
    return parse


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A whole number within ``[low, high]``."""
    what = f"a whole number {_range(low, high, False)}".rstrip()

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            _fail(what, text)
        if (low is not None and value < low) or (high is not None and value > high):
            _fail(what, text)
        return value

    parse.__name__ = "integer"
    return parse


PORT = integer(1, 65535)
PORT_OR_ZERO = integer(0, 65535)


def checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` with its ``ValueError`` as the option's one-line error."""

    def wrapper(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapper.__name__ = getattr(parse, "__name__", "value")
    return wrapper


def validated(parse: Callable[[str], object]) -> Callable[[str], str]:
    """The text itself, once ``parse`` accepts it (its ``ValueError`` is the one-line error)."""

    def wrapper(text: str) -> str:
        checked(parse)(text)
        return text

    wrapper.__name__ = getattr(parse, "__name__", "value")
    return wrapper


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host; without a trailing slash."""
    parts = urllib.parse.urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        _fail("an http:// or https:// URL with a valid port", text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail("an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080", text)
    return text.rstrip("/")


def amqp_url(text: str) -> str:
    """An ``amqp://`` or ``amqps://`` URL with a host."""
    parts = urllib.parse.urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        _fail("an amqp:// URL with a valid port", text)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        _fail("an amqp:// or amqps:// URL with a host, e.g. amqp://guest:guest@127.0.0.1/", text)
    return text


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def name(text: str) -> str:
    """A queue, method, exchange or run name: letters, digits and ``._:-``, 1-128 of them."""
    if not _NAME.match(text):
        _fail("1-128 letters, digits or ._:- (starting with a letter or digit)", text)
    return text


def new_file(text: str) -> Path:
    """A file to write: its directory must exist (``-`` is stdout where an option allows it)."""
    path = Path(text)
    if text == "" or path.is_dir():
        _fail("a file name (not a directory)", text)
    if not path.parent.is_dir():
        _fail(f"a file in an existing directory ({path.parent} does not exist)", text)
    return path


def existing_file(text: str) -> Path:
    """A file to read, which exists."""
    path = Path(text)
    if not path.is_file():
        _fail("an existing file", text)
    return path


def fail(prog: str, message: str, code: int = 1) -> int:
    """A command's one-line failure on stderr; returns ``code`` for ``main`` to return."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code
