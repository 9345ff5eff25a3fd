"""Data quality: the row-level contract (pandera) and distribution expectations (GE)."""
