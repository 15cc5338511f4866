"""What the load generator will send and when, decided before the first request goes out.

An open-loop run is a list of :class:`Shot`: an intended send time (seconds from the start) and
a request. Deciding the whole plan up front, from a seeded RNG, keeps the schedule independent
of how the server answers (that independence is the point of an open loop) and makes a run
repeatable: the same ``--seed`` sends the same requests at the same offsets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

SCENARIOS = ("list", "detail")
LIST_LIMITS = (1, 5, 10, 20, 50, 100)  # page sizes a client might ask for


@dataclass(frozen=True)
class Shot:
    """One request of the plan: when it is meant to leave, what it is, and its path."""

    at: float  # seconds from the start of the run
    scenario: str
    path: str


@dataclass(frozen=True)
class Catalogue:
    """What the requests are drawn from: drama ids and the list cursors seen at discovery."""

    ids: Sequence[int]
    cursors: Sequence[str]


def constant_arrivals(rate: float, duration: float) -> Iterator[float]:
    """Evenly spaced send times: ``rate`` a second for ``duration`` seconds."""
    count = round(rate * duration)
    return (i / rate for i in range(count))


def poisson_arrivals(rate: float, duration: float, rng: random.Random) -> Iterator[float]:
    """Send times of a Poisson process: exponential gaps with mean ``1 / rate``.

    Real users do not coordinate; bursts happen, and a server that only copes with evenly
    spaced requests is found out by this schedule, not by the constant one.
    """
    at = rng.expovariate(rate)
    while at < duration:
        yield at
        at += rng.expovariate(rate)


def parse_mix(text: str) -> dict[str, float]:
    """``list=1,detail=4`` -> ``{"list": 1.0, "detail": 4.0}`` (weights, not shares)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        if name not in SCENARIOS or not sep:
            raise ValueError(f"mix entries are NAME=WEIGHT with NAME one of {SCENARIOS}: {part!r}")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"a weight is a number: {part!r}") from None
        if not 0 <= mix[name] <= 1e6:  # NaN too
            raise ValueError(f"a weight is a number from 0 to 1e6: {part!r}")
    if sum(mix.values()) <= 0:
        raise ValueError(f"the mix {text!r} has no positive weight")
    return mix


def request_path(scenario: str, catalogue: Catalogue, rng: random.Random) -> str:
    """A list page of a random size from a random known position, or a random drama."""
    if scenario == "list":
        limit = rng.choice(LIST_LIMITS)
        cursor = rng.choice([None, *catalogue.cursors])
        return f"/dramas?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    return f"/dramas/{rng.choice(catalogue.ids)}"


def requests(
    mix: dict[str, float], catalogue: Catalogue, rng: random.Random
) -> Iterator[tuple[str, str]]:
    """An endless stream of ``(scenario, path)``, each scenario drawn by its weight."""
    names = [name for name, weight in mix.items() if weight > 0]
    weights = [mix[name] for name in names]
    if "detail" in names and not catalogue.ids:
        raise ValueError("the detail scenario needs drama ids: none were found or given")
    return _draw(names, weights, catalogue, rng)


def _draw(
    names: list[str], weights: list[float], catalogue: Catalogue, rng: random.Random
) -> Iterator[tuple[str, str]]:
    while True:
        scenario = rng.choices(names, weights)[0]
        yield scenario, request_path(scenario, catalogue, rng)


def plan(arrivals: Iterator[float], source: Iterator[tuple[str, str]]) -> list[Shot]:
    """Pair each arrival with the next request of ``source``."""
    return [Shot(at, *request) for at, request in zip(arrivals, source, strict=False)]


def sweep_rates(start: float, stop: float, factor: float) -> list[float]:
    """``START:STOP:FACTOR``: start, start x factor, ... up to and including stop."""
    if start <= 0 or factor <= 1 or stop < start:
        raise ValueError("a sweep needs 0 < START <= STOP and FACTOR > 1")
    rates = []
    rate = start
    while rate <= stop * (1 + 1e-9):
        rates.append(rate)
        rate *= factor
    return rates


MAX_IDS = 1_000_000


def parse_ids(text: str) -> list[int]:
    """``1-20,35`` -> the ids 1 to 20 and 35 (positive, ranges low-high, a million at most)."""
    ids: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if sep else low)
        except ValueError:
            raise ValueError(f"ids are N or LOW-HIGH, comma-separated: {part!r}") from None
        if not 1 <= first <= last:
            raise ValueError(f"ids are positive, ranges from low to high: {part!r}")
        if len(ids) + last - first + 1 > MAX_IDS:
            raise ValueError(f"more than {MAX_IDS:,} ids: {text!r}")
        ids.extend(range(first, last + 1))
    return ids
