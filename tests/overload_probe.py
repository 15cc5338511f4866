"""``python -m tests.overload_probe URL capacity|overload [RATE]``: the fault matrix's load
generator in a process of its own; prints its figures as JSON (tests/test_fault_matrix.py)."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.test_fault_matrix import probe_main

if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe_main(*sys.argv[1:]))))
