"""Benchmark: 100,000 returned verdict rows validated and ingested through the one intake path.

`python -m bench.review [--rows N] [--repeats R]`. The baseline, measured in the same run, is
the floor of any intake: read the same CSV with Polars and append it to DuckDB with no check at
all. The ratio is what the checks (signature, digests, authorisation, rationale, four-eyes,
exactly-once bookkeeping and the archive) cost on top of moving the bytes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from hitl_gate.audit.store import audit_connection
from hitl_gate.domain import load_domain
from hitl_gate.review.export import export_review_batches
from hitl_gate.review.intake import ingest_verdict_file
from hitl_gate.review.settings import review_settings

CREATED = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)


def _cases(n: int) -> pl.DataFrame:
    i = pl.int_range(n, eager=True)
    bands = ["A", "B", "C", "D", "E"]
    return pl.DataFrame(
        {
            "application_id": [f"APP-{k:06d}" for k in range(n)],
            "application_time": [datetime(2018, 3, 1, 8)] * n,
            "loan_amount": (i % 30_000 + 1000).cast(pl.Float64),
            "term": (i % 2) * 24 + 36,
            "loan_purpose": ["debt_consolidation"] * n,
            "annual_income": (i % 90_000 + 20_000).cast(pl.Float64),
            "debt_to_income": (i % 40).cast(pl.Float64) + 0.5,
            "homeownership": ["RENT"] * n,
            "delinq_2y": i % 3,
            "inquiries_last_12m": i % 5,
            "grade": ["C"] * n,
            "emp_title": ["Engineer"] * n,
            "state": ["CA"] * n,
            "review_queue": ["credit_analyst"] * n,
            "review_priority": (i % 3 + 1).cast(pl.Int32),
            "four_eyes": [False] * n,
            "route_reason_code": ["H08"] * n,
            "rules_fired": [["REV-BAND-C"]] * n,
            "reason_texts": [["Existing debt is high relative to income"]] * n,
            "pd": [0.03] * n,
            "score": [630] * n,
            "risk_band": [bands[k % 5] for k in range(n)],
        }
    )


def _setup(root: Path, rows: int) -> tuple[Path, dict]:
    """Export one batch of `rows` cases (untimed) and fill its CSV as reviewers would."""
    domain = load_domain("consumer_credit")
    base = review_settings(domain)
    queue = base.queues["credit_analyst"].model_copy(update={"batch_size": rows})
    settings = base.model_copy(update={"queues": {**base.queues, "credit_analyst": queue}})
    key = b"b" * 32
    (batch,) = export_review_batches(
        _cases(rows),
        domain=domain,
        batches_dir=root / "batches",
        key=key,
        partition_date=date(2018, 3, 1),
        created_at=CREATED,
        context={"policy_version": "v1"},
        settings=settings,
    )
    frame = pl.read_csv(batch.folder / "cases.csv", infer_schema=False)
    filled = frame.with_columns(
        verdict=pl.col("suggested_action"),
        rationale=pl.lit("checked the file"),
        reviewer_id=pl.lit("analyst-7"),
    )
    path = root / "filled.csv"
    filled.write_csv(path)
    return path, {"domain": domain, "settings": settings, "key": key, "batches": root / "batches"}


def _ingest(root: Path, source: Path, env: dict, run: int) -> int:
    inbox = root / f"inbox{run}"
    inbox.mkdir()
    path = inbox / source.name
    path.write_bytes(source.read_bytes())
    with audit_connection(root / f"audit{run}.duckdb") as con:
        started = time.perf_counter()
        outcome = ingest_verdict_file(
            con,
            path,
            domain=env["domain"],
            batches_dir=env["batches"],
            archive_dir=root / f"archive{run}",
            key=env["key"],
            run_id="bench",
            settings=env["settings"],
            now=CREATED + timedelta(hours=1),
        )
        elapsed = time.perf_counter() - started
    assert outcome.accepted == outcome_rows(source), outcome.messages[:3]
    return elapsed


def outcome_rows(source: Path) -> int:
    return pl.scan_csv(source).select(pl.len()).collect().item()


def _baseline(root: Path, source: Path, run: int) -> float:
    with audit_connection(root / f"base{run}.duckdb") as con:
        started = time.perf_counter()
        frame = pl.read_csv(source, infer_schema=False)
        con.register("incoming", frame.to_arrow())
        con.execute("CREATE TABLE raw_verdicts AS SELECT * FROM incoming")
        elapsed = time.perf_counter() - started
    return elapsed


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        source, env = _setup(root, args.rows)
        _say(f"setup (export + fill, untimed below): {time.perf_counter() - started:.1f} s")
        intake = [_ingest(root, source, env, run) for run in range(args.repeats)]
        base = [_baseline(root, source, run) for run in range(args.repeats)]
    m_in, m_base = statistics.median(intake), statistics.median(base)
    _say(f"rows: {args.rows:,}  repeats: {args.repeats}")
    _say(
        f"intake (validate + record + archive): median {m_in:.2f} s  "
        f"({args.rows / m_in:,.0f} rows/s)  all {[round(t, 2) for t in intake]}"
    )
    _say(
        f"baseline (read CSV + load DuckDB, no checks): median {m_base:.2f} s  "
        f"all {[round(t, 2) for t in base]}"
    )
    _say(
        f"ratio intake / baseline: {m_in / m_base:.1f}x   target < 5 s: "
        f"{'met' if m_in < 5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
