"""Benchmarks: `python -m bench.<module>`; each compares against a baseline measured in the same
run and reports medians of several repeats (results in BENCHMARKS.md)."""
