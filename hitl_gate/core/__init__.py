"""The base layer: domain declarations, home paths, the DuckDB database, digests, staged Parquet."""
