"""Benchmarks of hitl-gate: synthetic data at scale and the daily pipeline against a baseline."""
