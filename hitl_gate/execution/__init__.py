"""Execution: final actions acted on once, adverse-action notices and later outcomes."""
