"""hitl-gate: a human-in-the-loop approval layer for high-stakes automated decisions."""

__version__ = "0.1.0"
