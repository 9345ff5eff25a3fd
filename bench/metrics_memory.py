"""Peak memory of `decision_metrics`' computation by day size: frames against DuckDB.

`python -m bench metrics_memory --rows 1000000 3000000`

For each size, a DuckDB file gets a synthetic `case_stage_times` table (built by SQL: one day
of `rows` cases plus 14 baseline days of 5,000) and two child processes compute the day's
metrics and anomaly checks on it: `frames` as the asset did before issue 23 (the window's
cases as one Polars frame, `metrics.decision_metrics` and `anomalies.detect_all`), `duckdb` as
it does now (`metrics_db.decision_metrics_db`, `checks_db.detect_all_db`). Each child reports
its wall and CPU seconds and peak RSS (`getrusage`), so the figures are that path's alone.
Both must give the same metric rows (their count is printed side by side).

`python -m bench metrics_memory --home H [--modes duckdb frames]`

The whole evaluation (`daily.evaluate_metrics` on frames, `daily.evaluate_metrics_db` in
DuckDB: metrics, every anomaly check with the feature drift from the Feast files, fairness)
of every day each domain of the home `H` decided, in one call per domain: what a home's first
run of `decision_metrics` over all its days does (the demo's 90 days). Each mode runs in its
own child process on the home's audit database opened read-only; the child reports CPU, wall
and peak RSS of the evaluations alone (reading inputs included, imports excluded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from bench.measure import cpu_seconds, peak_rss_mb

DAY = date(2018, 3, 19)
BASELINE_ROWS = 5_000
MARK = "METRICS-MEMORY "


def build(path: Path, rows: int) -> None:
    """The synthetic `case_stage_times` table (routes, bands, review facts, times)."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(
        f"""
        CREATE OR REPLACE TABLE case_stage_times AS
        WITH n AS (
            SELECT i, CASE WHEN i < {rows} THEN DATE '{DAY}'
                ELSE DATE '{DAY}' - (1 + (i - {rows}) // {BASELINE_ROWS})::INTEGER END AS day
            FROM range({rows + 14 * BASELINE_ROWS}) t(i)
        ), c AS (
            SELECT i, day, hash(i) % 100 AS r, (hash(i * 7) % 1000) / 1000.0 AS u FROM n
        )
        SELECT 'consumer_credit' AS domain, day AS partition_date, 'C' || i AS case_id,
            CASE WHEN r < 55 THEN 'auto_approve' WHEN r < 65 THEN 'auto_decline'
                ELSE 'human_review' END AS route,
            'R' || (r % 7) AS route_rule_id,
            CASE WHEN r >= 65 THEN (CASE WHEN r % 2 = 0 THEN 'analyst' ELSE 'senior' END) END
                AS review_queue,
            ['A', 'B', 'C', 'D', 'E'][1 + (hash(i * 3) % 5)::INTEGER] AS risk_band,
            'v1' AS policy_version, u * 0.3 AS pd,
            day::TIMESTAMPTZ + INTERVAL 6 HOUR AS ingested_at,
            day::TIMESTAMPTZ + INTERVAL 6 HOUR + to_microseconds((u * 6e7)::BIGINT)
                AS validated_at,
            day::TIMESTAMPTZ + INTERVAL 7 HOUR AS scored_at,
            day::TIMESTAMPTZ + INTERVAL 7 HOUR + to_microseconds((u * 3e7)::BIGINT)
                AS routed_at,
            CASE WHEN r >= 95 THEN 'analyst' END AS batch_queue,
            CASE WHEN r >= 95 THEN day::TIMESTAMPTZ + INTERVAL 8 HOUR END AS exported_at,
            CASE WHEN r >= 95 THEN day::TIMESTAMPTZ + INTERVAL 56 HOUR END AS due_at,
            CASE WHEN r >= 97 THEN (CASE WHEN u < 0.5 THEN 'approve' ELSE 'decline' END) END
                AS verdict,
            CASE WHEN r >= 97 THEN 'rev' || (i % 5) END AS reviewer_id,
            CASE WHEN r >= 97 THEN 'file' || (i % 40) END AS verdict_file_sha256,
            CASE WHEN r >= 97 THEN day::TIMESTAMPTZ + INTERVAL 20 HOUR
                + to_microseconds((u * 1e9)::BIGINT) END AS verdict_received_at,
            CASE WHEN r < 55 THEN 'approve' WHEN r < 65 THEN 'decline' END AS executed_action,
            CASE WHEN r < 65 THEN 'policy' END AS decided_by,
            CASE WHEN r < 65 THEN day::TIMESTAMPTZ + INTERVAL 9 HOUR
                + to_microseconds((u * 1e8)::BIGINT) END AS executed_at
        FROM c
        """
    )
    con.close()


def measure(mode: str, path: Path) -> dict:
    """One path's computation on the table at `path`, in this (fresh) process."""
    import duckdb
    import polars as pl

    from hitl_gate.observability.anomalies import Thresholds, detect_all
    from hitl_gate.observability.checks_db import detect_all_db, window_days
    from hitl_gate.observability.daily import METRIC_CASE_COLUMNS
    from hitl_gate.observability.metrics import decision_metrics, with_review_facts
    from hitl_gate.observability.metrics_db import decision_metrics_db

    as_of = datetime(2018, 3, 21, tzinfo=UTC)
    bands, t = ["D", "E"], Thresholds()
    window = window_days([DAY], t)
    features = pl.DataFrame(schema={"partition_date": pl.Date})
    con = duckdb.connect(str(path), read_only=True)
    cpu, started = cpu_seconds(), time.perf_counter()
    if mode == "frames":
        cases = con.sql(
            f"SELECT {', '.join(METRIC_CASE_COLUMNS)} FROM case_stage_times WHERE partition_date "
            f"BETWEEN DATE '{window[0]}' AND DATE '{DAY}' ORDER BY partition_date, case_id"
        ).pl()
        in_run = cases.filter(pl.col("partition_date") == DAY)
        metrics = decision_metrics(in_run, as_of=as_of, decline_bands=bands)
        findings = detect_all(
            with_review_facts(cases, bands), features, days=[DAY], as_of=as_of,
            feature_columns=[], t=t,
        )  # fmt: skip
    else:
        metrics = decision_metrics_db(
            con, "consumer_credit", [DAY], as_of=as_of, decline_bands=bands
        )
        findings = detect_all_db(
            con, "consumer_credit", window, days=[DAY], as_of=as_of, decline_bands=bands,
            feature_files={}, feature_columns=[], t=t,
        )  # fmt: skip
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    con.close()
    return {
        "mode": mode, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(peak_rss_mb()), "metric_rows": metrics.height,
        "failed": sorted(f.check for f in findings if not f.passed),
    }  # fmt: skip


def measure_home(mode: str, home: Path) -> dict:
    """Both evaluations' inputs read and evaluated for every decided day of each domain."""
    import duckdb

    from hitl_gate.core.domain import load_domain
    from hitl_gate.core.home import HitlPaths
    from hitl_gate.observability.daily import (
        MetricSettings,
        evaluate_metrics,
        evaluate_metrics_db,
        read_metric_inputs,
        read_model_features,
    )
    from hitl_gate.observability.fairness_period import read_protected_values
    from hitl_gate.observability.outcomes_db import OutcomeFiles
    from models.outcomes import outcome_flags, read_outcomes

    paths = HitlPaths.at(home)
    settings, as_of = MetricSettings(), datetime.now(UTC)
    con = duckdb.connect(str(paths.audit_db), read_only=True)
    domains = [
        d for (d,) in con.execute("SELECT DISTINCT domain FROM decisions ORDER BY 1").fetchall()
    ]
    cpu, started = cpu_seconds(), time.perf_counter()
    rows, cases, failed = 0, 0, []
    for name in domains:
        domain = load_domain(name)
        days = [d for (d,) in con.execute(
            "SELECT DISTINCT partition_date FROM decisions WHERE domain = ? ORDER BY 1", [name]
        ).fetchall()]  # fmt: skip
        if mode == "frames":
            inputs = read_metric_inputs(con, name, days, settings.thresholds)
            evaluation = evaluate_metrics(
                inputs, domain, settings, as_of=as_of,
                outcomes=outcome_flags(read_outcomes(paths.landing, domain), domain),
                features=read_model_features(paths.feast_dir, domain, inputs.window),
                protected=read_protected_values(paths.warehouse, domain, days),
            )  # fmt: skip
        else:
            inputs = read_metric_inputs(con, name, days, settings.thresholds, with_cases=False)
            evaluation = evaluate_metrics_db(
                con, inputs, domain, settings, as_of=as_of,
                outcomes=OutcomeFiles.of(paths.landing, domain),  # as the asset: no frame
                feast_dir=paths.feast_dir, warehouse=paths.warehouse,
            )  # fmt: skip
        rows, cases = rows + evaluation.metrics.height, cases + evaluation.cases
        failed += [f"{name}:{f.check}" for f in evaluation.findings if not f.passed]
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    con.close()
    return {
        "mode": mode, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(peak_rss_mb()), "metric_rows": rows, "cases": cases,
        "failed": sorted(failed),
    }  # fmt: skip


def _child(mode: str, path: Path, command: str = "_measure") -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.metrics_memory", command, mode, str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [x for x in done.stdout.splitlines() if x.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict = json.loads(lines[-1][len(MARK) :])
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_measure", "_measure_home"):
        run = measure if argv[0] == "_measure" else measure_home
        figures = run(argv[1], Path(argv[2]))
        sys.stdout.write(MARK + json.dumps(figures) + "\n")
        return
    parser = argparse.ArgumentParser(prog="python -m bench metrics_memory", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--modes", nargs="+", default=["duckdb", "frames"])
    parser.add_argument("--home", type=Path, help="evaluate this home's decided days instead")
    args = parser.parse_args(argv)
    if args.home is not None:
        for mode in args.modes:
            sys.stdout.write(json.dumps(_child(mode, args.home, "_measure_home")) + "\n")
            sys.stdout.flush()
        return
    with tempfile.TemporaryDirectory(prefix="hitl-metrics-memory-") as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"cases_{rows}.duckdb"
            build(path, rows)
            for mode in args.modes:
                figures = _child(mode, path)
                sys.stdout.write(f"{rows:>10,} {json.dumps(figures)}\n")
                sys.stdout.flush()
            path.unlink()


if __name__ == "__main__":
    main()
