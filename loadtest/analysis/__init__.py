"""The trace analyser: where a request's latency goes, queue-aware, over one trace or many.

`traces` reads Jaeger JSON and OTLP-JSON (through ``loadtest.otlp``) into one model;
`critical_path` walks one trace (its spans reshaped by `reshape`, each piece named by
`categories`); `breakdown` aggregates many; `report` draws them; `runs` selects runs and
windows; `command` is ``python -m loadtest analyze``; `trace_api` serves one trace's analysis
over HTTP (the player's waterfall). It imports neither the dev stack, the load generator nor
the benchmarks.
"""
