"""Benchmark: 100,000 returned verdict rows validated and ingested through the one intake path.

`python -m bench.review [--rows N] [--repeats R]`. The baseline, measured in the same run, is
the floor of any intake: read the same CSV with Polars and append it to DuckDB with no check at
all. The ratio is what the checks (the reviewer's SSH signature verified by ssh-keygen against
the people registry, replayed from its signed acts, and the batch's assignee; manifest,
digests, rationale, four-eyes, (batch, case) membership, exactly-once bookkeeping and the
archive) cost on top of moving the bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.identity.signatures import VERDICTS, sign_file
from hitl_gate.identity.store import append_act, draft_act, load_registry, sign_act
from hitl_gate.review.export.batches import BatchExport, export_review_batches
from hitl_gate.review.intake.verdict_files import ingest_verdict_file
from hitl_gate.review.settings import review_settings

CREATED = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)
REVIEWER = "bench-analyst"


def _cases(n: int) -> pl.DataFrame:
    """Review cases with realistic variety: full-precision PDs, amounts, incomes and times are
    (nearly) all distinct, so the digest cannot lean on repeated values; text columns repeat as
    categories do."""
    rng = np.random.default_rng(7)
    bands = np.array(["A", "B", "C", "D", "E"])
    purposes = np.array(["debt_consolidation", "credit_card", "home_improvement", "car", "other"])
    titles = np.array(["Engineer", "Teacher", "Nurse", "Driver", "Manager", "Sales", "Owner"])
    start = datetime(2018, 3, 1)
    return pl.DataFrame(
        {
            "application_id": [f"APP-{k:06d}" for k in range(n)],
            "application_time": [
                start + timedelta(seconds=int(s)) for s in rng.integers(0, 86_400, n)
            ],
            "loan_amount": (rng.integers(40, 1_600, n) * 25).astype(float),
            "term": rng.choice([36, 60], n),
            "loan_purpose": rng.choice(purposes, n),
            "annual_income": rng.lognormal(11, 0.5, n).round(2),
            "debt_to_income": rng.uniform(0, 45, n).round(2),
            "homeownership": rng.choice(["RENT", "OWN", "MORTGAGE"], n),
            "delinq_2y": rng.poisson(0.3, n),
            "inquiries_last_12m": rng.poisson(1.2, n),
            "grade": rng.choice(list("ABCDEFG"), n),
            "emp_title": rng.choice(titles, n),
            "state": rng.choice(["CA", "NY", "TX", "FL", "WA", "IL"], n),
            "review_queue": ["credit_analyst"] * n,
            "review_priority": rng.integers(1, 4, n).astype(np.int32),
            "four_eyes": [False] * n,
            "route_reason_code": rng.choice(["H07", "H08", "H09"], n),
            "rules_fired": [["REV-BAND-C"]] * n,
            "reason_texts": [["Existing debt is high relative to income"]] * n,
            "pd": rng.beta(2, 40, n),  # 17 significant digits: rounded column-wise
            "score": rng.integers(450, 800, n),
            "risk_band": rng.choice(bands, n),
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
        BatchExport(
            domain=domain,
            batches_dir=root / "batches",
            key=key,
            partition_date=date(2018, 3, 1),
            created_at=CREATED,
            context={"policy_version": "v1"},
            settings=settings,
        ),
    )
    frame = pl.read_csv(batch.folder / "cases.csv", infer_schema=False)
    filled = frame.with_columns(
        verdict=pl.col("suggested_action"),
        rationale=pl.lit("checked the file"),
        reviewer_id=pl.lit(REVIEWER),
    )
    path = root / "filled.csv"
    filled.write_csv(path)
    _registry_and_assignment(root, batch.batch_id, batch.case_ids)
    sign_file(path, root / "keys" / REVIEWER, VERDICTS)
    return path, {"domain": domain, "settings": settings, "key": key, "batches": root / "batches"}


def _key(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def _registry_and_assignment(root: Path, batch_id: str, case_ids: list[str]) -> None:
    """The audit database every timed run starts from: a registry (administrator and the
    reviewer, signed acts), the batch and its cases as exported, and its assignment."""
    keys = root / "keys"
    keys.mkdir()
    at = datetime(2018, 1, 1, tzinfo=UTC)
    with audit_connection(root / "template.duckdb") as con:
        for name, grants in (("bench-admin", ["*:admin"]), (REVIEWER, ["consumer_credit:analyst"])):
            key = _key(keys, name)
            public = Path(f"{key}.pub").read_text(encoding="ascii")
            payload = draft_act(
                load_registry(con), "add_person", at=at, person_id=name, display_name=name,
                grants=grants, keys=[{"public_key": public}],
            )  # fmt: skip
            append_act(con, sign_act(payload, keys / ("bench-admin")))
        con.execute(
            "INSERT INTO review_batches VALUES (?, 'consumer_credit', ?, 'credit_analyst', ?, ?, "
            "?, ?, 'x', 'bench')",
            [batch_id, date(2018, 3, 1), str(root / "batches" / batch_id), len(case_ids),
             CREATED, CREATED + timedelta(days=2)],
        )  # fmt: skip
        cases = pl.DataFrame(
            {"batch_id": batch_id, "domain": "consumer_credit", "case_id": case_ids}
        )
        con.register("bench_cases", cases.to_arrow())
        con.execute("INSERT INTO review_batch_cases SELECT * FROM bench_cases")
        con.execute(
            "INSERT INTO review_assignments (batch_id, seq, domain, queue, assignee_id, "
            "opinion_slot, assigned_by, recorded_at) VALUES (?, 1, 'consumer_credit', "
            "'credit_analyst', ?, 0, 'pipeline', ?)",
            [batch_id, REVIEWER, CREATED],
        )


Timing = tuple[float, float]  # (wall seconds, CPU seconds of all threads)


def _clock() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def _ingest(root: Path, source: Path, env: dict, run: str) -> Timing:
    inbox = root / f"inbox{run}"
    inbox.mkdir()
    path = inbox / source.name
    path.write_bytes(source.read_bytes())
    shutil.copy(f"{source}.sig", f"{path}.sig")
    shutil.copy(root / "template.duckdb", root / f"audit{run}.duckdb")
    with audit_connection(root / f"audit{run}.duckdb") as con:
        started = _clock()
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
        elapsed = _since(started)
    assert outcome.accepted == outcome_rows(source), outcome.messages[:3]
    return elapsed


def outcome_rows(source: Path) -> int:
    return pl.scan_csv(source).select(pl.len()).collect().item()


def _baseline(root: Path, source: Path, run: str) -> Timing:
    with audit_connection(root / f"base{run}.duckdb") as con:
        started = _clock()
        frame = pl.read_csv(source, infer_schema=False)
        con.register("incoming", frame.to_arrow())
        con.execute("CREATE TABLE raw_verdicts AS SELECT * FROM incoming")
        elapsed = _since(started)
    return elapsed


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _median(times: list[Timing], which: int) -> float:
    return statistics.median(t[which] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        source, env = _setup(root, args.rows)
        _say(f"setup (export + fill, untimed below): {time.perf_counter() - started:.1f} s")
        # One untimed round of each first: lazy imports, compiled regexes, a warm page cache.
        _ingest(root, source, env, "warm")
        _baseline(root, source, "warm")
        intake, base = [], []
        for run in range(args.repeats):  # interleaved, so load changes hit both alike
            intake.append(_ingest(root, source, env, str(run)))
            base.append(_baseline(root, source, str(run)))
    m_in, m_base = _median(intake, 0), _median(base, 0)
    c_in, c_base = _median(intake, 1), _median(base, 1)
    _say(f"rows: {args.rows:,}  repeats: {args.repeats}  load average: {os.getloadavg()[0]:.1f}")
    _say(
        f"intake (signature + validate + record + archive): median {m_in:.2f} s wall, "
        f"{c_in:.2f} s CPU  "
        f"({args.rows / m_in:,.0f} rows/s)  all {[round(t[0], 2) for t in intake]}"
    )
    _say(
        f"baseline (read CSV + load DuckDB, no checks): median {m_base:.2f} s wall, "
        f"{c_base:.2f} s CPU  all {[round(t[0], 2) for t in base]}"
    )
    _say(
        f"ratio intake / baseline: {m_in / m_base:.1f}x wall, {c_in / c_base:.1f}x CPU   "
        f"target < 5 s: {'met' if m_in < 5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
