"""Benchmarks and experiments on the dev stack: ``make bench``, ``make scale``, ``make compare``,
``make soak``, and the micro-benchmarks of single pieces (`presign`, `spans`, `export`,
`netdelay`). They build on the dev stack, the load generator and the analyser; nothing imports
them.
"""
