"""The load generator's scenario mix for Locust, for runs spread over many machines.

``locust -f loadtest/load/locustfile.py --host http://127.0.0.1:8080``
(``pip install -e '.[locust]'``), or the master and workers of ``k8s/locust/`` (which carry a
copy of this file in a ConfigMap; the two must stay equal, a test checks it). Self-contained on
purpose: the stock Locust image runs it without this project installed.

The same mix as ``python -m loadtest load``: ``list`` pages ``GET /dramas`` with a random page
size from a random known cursor, ``detail`` asks ``GET /dramas/{id}`` for a random known id;
ids and cursors are discovered once per process from ``GET /dramas``. Every request carries
``baggage: synthetic=true,loadtest.run=<run id>``.

Locust users are a closed loop: each waits for its answer before pacing its next request
(``constant_throughput``), so a stalled server sees fewer requests, not longer ones. For latency
under a fixed arrival rate use ``python -m loadtest load``; use Locust for volume.

Settings (environment): ``LOADTEST_MIX`` (``list=1,detail=4``), ``LOADTEST_USER_RATE``
(requests a second per user, default 1), ``LOADTEST_RUN_ID`` (default random).
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from typing import ClassVar

from locust import FastHttpUser, constant_throughput, task

LIST_LIMITS = (1, 5, 10, 20, 50, 100)
DISCOVERY_PAGE, DISCOVERY_PAGES = 20, 100
RUN_ID = os.environ.get("LOADTEST_RUN_ID") or uuid.uuid4().hex[:12]
BAGGAGE = {"baggage": f"synthetic=true,loadtest.run={RUN_ID}"}


def parse_mix(text: str) -> dict[str, int]:
    """``list=1,detail=4`` -> task weights (Locust wants integers)."""
    pairs = (part.strip().partition("=") for part in text.split(","))
    return {name: int(weight) for name, _, weight in pairs}


MIX = parse_mix(os.environ.get("LOADTEST_MIX", "list=1,detail=4"))


class DramaUser(FastHttpUser):
    """One simulated client of the drama API."""

    wait_time = constant_throughput(float(os.environ.get("LOADTEST_USER_RATE", "1")))
    ids: ClassVar[list[int]] = []  # shared by the users of this process, filled once
    cursors: ClassVar[list[str]] = []
    _discovery = threading.Lock()  # gevent-aware: Locust monkey-patches threading

    def on_start(self) -> None:
        with self._discovery:
            if not DramaUser.ids:
                self.discover()

    def discover(self) -> None:
        cursor: str | None = None
        for _ in range(DISCOVERY_PAGES):
            query = f"?limit={DISCOVERY_PAGE}" + (f"&cursor={cursor}" if cursor else "")
            page = self.client.get("/dramas" + query, headers=BAGGAGE, name="discover").json()
            DramaUser.ids += [int(item["id"]) for item in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return
            DramaUser.cursors.append(cursor)

    @task(MIX.get("list", 0))
    def list_page(self) -> None:
        limit = random.choice(LIST_LIMITS)
        cursor = random.choice([None, *DramaUser.cursors])
        path = f"/dramas?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        self.client.get(path, headers=BAGGAGE, name="list")

    @task(MIX.get("detail", 0))
    def detail(self) -> None:
        drama = random.choice(DramaUser.ids)
        self.client.get(f"/dramas/{drama}", headers=BAGGAGE, name="detail")
