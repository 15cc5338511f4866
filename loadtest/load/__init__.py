"""Load generation: open- and closed-loop schedules, their runner and recorder, faults, Locust.

``python -m loadtest load`` (`command`) and ``python -m loadtest fault`` (`fault`); the same mix
for distributed runs in `locustfile.py`. It needs an HTTP API to aim at, not the dev stack.
"""
