"""The dev stack: what ``make run`` runs and the end-to-end tests start, as OS processes.

`stack.Stack` starts the services with the embedded S3 (`local_s3`), the OTLP sink (`sink`), the
delaying proxy (`netdelay`) and the player's front (`front`); `config.StackConfig` says how;
`run` is ``make run``'s command. Nothing here imports the load generator or the benchmarks.
"""
