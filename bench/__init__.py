"""Benchmarks: `python -m bench.<module>`; each compares against a baseline in the same run."""
