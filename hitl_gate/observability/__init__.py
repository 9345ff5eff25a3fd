"""Observability: decision metrics, stage timing and traces, anomaly findings, the HTML report.

`metrics`, `anomalies` and `report` are pure over Polars frames, so scenarios for tests are a
few lines of frame construction; `traces` streams OTLP lines out of DuckDB; `daily` is one
run of the `decision_metrics` asset (read the audit database, evaluate, store, report).
"""
