"""Benchmarks of hitl-gate: `python -m bench.<module>` (or `make bench`); each compares against a
baseline measured in the same run and writes its section of BENCHMARKS.md."""
