"""Reading settings from an environment mapping, with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping

from ._errors import ConfigError


class Env:
    """Typed, validated access to a mapping of environment variables (``os.environ`` or a dict)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        """The variable's value, or ``default`` when unset or empty."""
        return self._env.get(name) or default

    def integer(self, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        """An integer in ``[low, high]``; raises :class:`ConfigError` naming the variable."""
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
        raw = (self._env.get(name) or "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value
