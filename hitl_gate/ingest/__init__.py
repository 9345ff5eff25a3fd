"""Landing-zone ingestion: reading files, the landing registry, late files and plain reports."""
