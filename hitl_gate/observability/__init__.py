"""Observability: decision metrics, stage timing and traces, anomaly findings, the HTML report.

Everything here is pure over Polars frames (the asset in `assets/metrics.py` loads them from the
audit database), so scenarios for tests are a few lines of frame construction.
"""
