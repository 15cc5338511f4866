"""Reading settings from an environment mapping, with errors that name the variable.

The same reads list the variables: settings built from a :class:`VariableListing` (an empty
environment that takes notes) give every variable they read, its default and allowed values,
which is what ``python -m drama --help`` prints. The list cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from broker.errors import ConfigError


@dataclass(frozen=True)
class Variable:
    """One environment variable a service reads: its default ("" for unset) and what it takes."""

    name: str
    default: str
    allowed: str = ""


class VariableListing(Mapping[str, str]):
    """An empty environment that notes every variable an :class:`Env` reads from it."""

    def __init__(self) -> None:
        self.variables: dict[str, Variable] = {}

    def note(self, name: str, default: object, allowed: str = "") -> None:
        self.variables.setdefault(name, Variable(name, _spelled(default), allowed))

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _spelled(default: object) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


class Env:
    """Typed, validated access to a mapping of environment variables (``os.environ`` or a dict)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _note(self, name: str, default: object, allowed: str = "") -> None:
        if isinstance(self._env, VariableListing):
            self._env.note(name, default, allowed)

    def text(self, name: str, default: str) -> str:
        """The variable's value, or ``default`` when unset or empty."""
        self._note(name, default)
        return self._env.get(name) or default

    def integer(self, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        """An integer in ``[low, high]``; raises :class:`ConfigError` naming the variable."""
        # A default below the range means "unset": the setting is off (RPC_HTTP_PORT).
        shown = default if default >= low else ""
        self._note(name, shown, f"{low}-{high}" if high is not None else f">= {low}")
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise ConfigError(f"{name} must be {bounds}, got {value}")
        return value

    def flag(self, name: str, *, default: bool) -> bool:
        self._note(name, default, "true or false")
        raw = (self._env.get(name) or "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        self._note(name, default, " or ".join(choices))
        value = self.text(name, default)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value
