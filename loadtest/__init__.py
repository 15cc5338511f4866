"""drama-streaming's tools, one subpackage per product: ``python -m loadtest <command>``.

- `devstack`: the local stack as processes (``make run``, the end-to-end tests), with the
  embedded S3, the OTLP sink, the delaying proxy and the player's front;
- `load`: the load generator (open and closed loop, faults, Locust);
- `analysis`: the trace analyser (critical path, categories, reports, the trace API);
- `bench`: the benchmarks (``make bench``, ``scale``, ``compare``, ``soak``).

`cli` and `otlp` (the one OTLP codec) are shared by all four.
"""
