"""Plain-words reports of ingestion problems, for `hitl ingest check` and `hitl quarantine`.

A data engineer reads these instead of a stack trace: per file, how many rows were read,
accepted and quarantined, which columns failed which check how often (with one example each),
and the first few failing rows. Pure functions over the frames ingestion already produces.
"""

from __future__ import annotations

import polars as pl

from hitl_gate.ingest.landing import IngestResult
from hitl_gate.ingest.names import shown

CHECK_WORDS = {
    "type": "value does not have the declared type",
    "not_null": "required value is missing",
    "min": "value is below the declared minimum",
    "max": "value is above the declared maximum",
    "allowed": "value is not one of the allowed values",
    "unique": "value repeats an earlier row",
    "duplicate_case_id": "case id repeats an earlier row of the batch",
    "duplicate_case_id_across_partitions": "case id was already accepted on another day",
    "future_time": "time is later than the file's arrival",
    "case_id_form": "case id is not canonical (look-alike, invisible or control characters)",
    "duplicate_keys": "a JSON object gives a key twice",
    "ambiguous_columns": "column names differ only by case or whitespace",
    "file_changed": "the file changed after it was registered",
}


SAMPLE_COLUMNS = ("file_path", "row_number", "case_id", "column", "check")


def quarantine_sample(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantined rows as shown in Dagster's metadata: where, and which check; never the value.

    Dagster keeps event metadata in its own databases for good, outside what retention
    governs, so the offending value and the message quoting it are left out at the source;
    they stay in the audit database's `quarantine` table, which retention redacts.
    """
    return quarantine.select(c for c in SAMPLE_COLUMNS if c in quarantine.columns)


def describe_check(check: str) -> str:
    """What a check name means, in words (rules say which rule)."""
    if check.startswith("rule:"):
        return f"breaks cross-field rule {check.removeprefix('rule:')}"
    return CHECK_WORDS.get(check, check.replace("_", " "))


def _clip(text: str | None, width: int = 100) -> str:
    text = "null" if text is None else shown(text, backslashes=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def problem_summary(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Row problems per column and check: how many rows, and the first as an example."""
    rows = quarantine.filter(pl.col("row_number").is_not_null())
    return (
        rows.group_by("column", "check", maintain_order=True)
        .agg(
            rows=pl.col("row_number").n_unique(),
            first_row=pl.col("row_number").first(),
            example=pl.col("message").first(),
        )
        .sort("rows", "column", descending=[True, False])
    )


def format_file_report(result: IngestResult, max_examples: int = 10) -> str:
    """One block per file: counts, whole-file error or problems by column, first failing rows."""
    blocks = []
    for file in result.files.iter_rows(named=True):
        mine = result.quarantine.filter(pl.col("file_sha256") == file["file_sha256"])
        lines = [
            f"file {shown(file['file_path'])}",
            f"  sha256 {file['file_sha256']}, {file['size_bytes']:,} bytes",
            f"  rows read {file['rows_read']:,}, accepted {file['rows_accepted']:,}, "
            f"quarantined {file['rows_quarantined']:,}",
        ]
        if file["status"] == "rejected":
            lines.append(f"  REJECTED WHOLE FILE ({mine['check'][0]}): {file['error']}")
        summary = problem_summary(mine)
        if summary.height:
            lines.append("  problems by column:")
            for p in summary.iter_rows(named=True):
                noun = "row" if p["rows"] == 1 else "rows"
                lines.append(
                    f"    {p['column']}: {p['rows']:,} {noun}, {describe_check(p['check'])} "
                    f"[{p['check']}]"
                )
            examples = mine.filter(pl.col("row_number").is_not_null()).head(max_examples)
            lines.append(f"  first {examples.height} problems:")
            lines.extend(f"    {_clip(m, 160)}" for m in examples["message"])
        if file["status"] != "rejected" and not summary.height:
            lines.append("  OK: every row satisfies the contract")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_table(frame: pl.DataFrame, width: int = 60) -> str:
    """A fixed-width text table of a small frame, values clipped to `width` characters."""
    if frame.height == 0:
        return "(none)"
    cells = [[_clip(None if v is None else str(v), width) for v in row] for row in frame.rows()]
    widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(frame.columns)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(frame.columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells)
    return "\n".join(lines)
