"""File names as the landing zone sees them: their format, the conventions that refuse them,
and how they are shown.

A file name is data from outside: it is never a pattern (nothing here globs; every file is
opened by its exact path) and never printed raw. `shown` escapes what could fake a log line or
hide in plain sight (control, format and separator characters, backslashes), so a name with a
newline or a zero-width space reads unambiguously in messages, logs and run metadata.

The naming conventions (docs/data_contracts.md, "Every entry of the folder is accounted for"):
- hidden: the name starts with `.` (a partial upload, `.x.csv`, or a tool's own file);
- temporary: `~$` at the start, `~` at the end, or a temporary suffix (`.tmp`, `.part`, ...);
- data: a known format suffix (`.csv`, `.tsv`, `.csv.gz`, `.tsv.gz`, `.parquet`, `.jsonl`),
  taken only when the domain's contract allows that format;
- anything else is refused as an unsupported type. Every one of them is recorded.
"""

from __future__ import annotations

from hitl_gate.quality.escaped import shown

__all__ = ["shown"]

# Longest suffix first: `x.csv.gz` is gzip CSV, not an unknown `.gz`.
FORMAT_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".csv.gz", "csv.gz"),
    (".tsv.gz", "tsv.gz"),
    (".csv", "csv"),
    (".tsv", "tsv"),
    (".parquet", "parquet"),
    (".jsonl", "jsonl"),
)
TEMPORARY_SUFFIXES = (
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".filepart",
    ".swp",
    ".lock",
)


def file_format(name: str) -> str | None:
    """The data format a file name declares by its suffix (case-insensitive), if any."""
    lowered = name.lower()
    for suffix, fmt in FORMAT_SUFFIXES:
        if lowered.endswith(suffix) and len(lowered) > len(suffix):
            return fmt
    return None


def convention_refusal(name: str) -> tuple[str, str] | None:
    """(reason, words) when the naming conventions say a file is not data to ingest."""
    lowered = name.lower()
    if name.startswith("."):
        return "hidden", "hidden file (the name starts with '.'), e.g. an upload in progress"
    if name.startswith("~$") or name.endswith("~") or lowered.endswith(TEMPORARY_SUFFIXES):
        return "temporary", "temporary file by its name (~, .tmp, .part and the like)"
    return None
