"""Retention applied to a copy of the demo home: expired personal data goes, the audit chain
stays verifiable (the rules: tests/unit/audit/test_retention.py)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.audit.keys import checkpoint_signer, public_key_hex
from hitl_gate.audit.retention import REDACTED
from hitl_gate.audit.run_seal import verify_home, verifying_session
from hitl_gate.audit.seal import seal_run
from hitl_gate.core.database import audit_connection, scalar
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import AuditKeySettings
from tests.signed_acts_fixtures import demo_signing_key

# `audit`: the per-run segments (`HitlPaths.segments_dir`), part of the audit state.
COPIED = ("audit.duckdb", "audit.duckdb.wal", "audit", "checkpoints", "secrets", "landing",
          "warehouse", "review_exports", "demo-keys")  # fmt: skip


@pytest.fixture
def demo_copy(demo_home: HitlPaths, tmp_path: Path) -> HitlPaths:
    """The demo home's data and audit state, copied: retention deletes, the shared home may not."""
    home = tmp_path / "home"
    home.mkdir()
    for name in COPIED:
        source = demo_home.home / name
        if source.is_dir():
            shutil.copytree(source, home / name)
        elif source.exists():
            shutil.copy(source, home / name)
    return HitlPaths.at(home)


def test_apply_removes_expired_personal_data_and_verify_stays_green(
    demo_copy: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = demo_copy
    key = checkpoint_signer(paths, AuditKeySettings())  # the home's token, copied with it
    with audit_connection(paths.audit_db) as con:  # a quarantined value, as ingestion records it
        con.execute(
            "INSERT INTO quarantine VALUES ('consumer_credit', DATE '2018-01-03', 'f.csv', "
            "'abc', 7, 'LC18Q1-Q1', 'annual_income', 'type', '12x', '''12x'' is not a number', "
            "'r1')"
        )
        seal_run(con, f"test-{uuid.uuid4()}", key, paths.checkpoints_dir)
    home = ["--home", str(paths.home), "--domain", "consumer_credit"]
    # as of 2020-02-15 with 25 months, consumer credit days up to 2018-01-15 have expired
    main([*home, "retention", "apply", "--as-of", "2020-02-15", "--dry-run"])
    assert "would remove" in capsys.readouterr().out
    assert (paths.landing / "applications" / "2018-01-03").exists()  # dry run: nothing gone

    sign = demo_signing_key(paths.home, "demo-compliance")  # deletions are signed
    main([*home, "retention", "apply", "--as-of", "2020-02-15", *sign])
    landing = paths.landing / "applications"
    assert not (landing / "2018-01-15").exists() and (landing / "2018-01-16").exists()
    stored = paths.warehouse / "consumer_credit"
    for stage in ("validated_cases", "case_features", "routed_decisions"):  # input columns
        assert not (stored / stage / "2018-01-03.parquet").exists(), stage
        assert (stored / stage / "2018-01-16.parquet").exists(), stage
    assert (stored / "risk_scores" / "2018-01-03.parquet").exists()  # no input column: kept
    assert not list(paths.review_batches.rglob("consumer_credit-20180103-*"))
    assert list(paths.review_batches.rglob("consumer_credit-20180116-*"))
    assert list(paths.review_batches.rglob("lending_club-*"))  # another domain: untouched
    with verifying_session(paths) as con:
        value, message = con.execute(
            "SELECT value, message FROM quarantine WHERE case_id = 'LC18Q1-Q1'"
        ).fetchone()
        assert value is None and message == f"'{REDACTED}' is not a number"
        kinds = dict(
            con.execute("SELECT kind, count(*) FROM retention_actions GROUP BY ALL").fetchall()
        )
        assert {"landing_file", "stored_partition", "review_batch", "verdict_file",
                "quarantine_values", "store_rewrite"} <= kinds.keys()  # fmt: skip
        report = verify_home(con, paths, None)
        assert report.ok, report.summary()
        logged = scalar(
            con, "SELECT count(*) FROM audit_events WHERE event_type = 'retention_applied'"
        )
        assert logged == sum(kinds.values())  # each removal is itself in the chain
        size = scalar(con, "SELECT count(*) FROM audit_events")
    main(["--home", str(paths.home), "audit", "verify", "--public-key", public_key_hex(key)])
    assert "OK (signed by the trusted key" in capsys.readouterr().out

    main([*home, "retention", "apply", "--as-of", "2020-02-15", *sign])  # again: nothing to do
    with audit_connection(paths.audit_db, read_only=True) as con:
        assert scalar(con, "SELECT count(*) FROM audit_events") == size


SECRETS = ("INCOME-7361942-SECRET", "EMPLOYER-5521-SECRET")  # found nowhere else by chance


def _land_bad_rows(paths: HitlPaths, day: str) -> Path:
    """Three new applications of `day` whose income is not a number: quarantined, with the
    rest of their row (an employer) only in the landing file."""
    import polars as pl

    folder = paths.landing / "applications" / day
    source = next(folder.glob("*.csv"))
    rows = pl.read_csv(source, infer_schema=False).head(3)
    rows = rows.with_columns(
        pl.format("RET-{}", pl.int_range(pl.len())).alias("application_id"),
        pl.format(f"{SECRETS[0]}-{{}}", pl.int_range(pl.len())).alias("annual_income"),
        pl.lit(SECRETS[1]).alias("emp_title"),
    )
    target = folder / "late_applications.csv"
    rows.write_csv(target)
    return target


def _holders(root: Path) -> dict[str, list[str]]:
    """Each secret's files under `root` (the whole home: every store, export and log)."""
    found: dict[str, list[str]] = {s: [] for s in SECRETS}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        for secret in SECRETS:
            if secret.encode() in data:
                found[secret].append(str(path.relative_to(root)))
    return found


def test_after_retention_no_removed_value_is_left_in_any_store(
    demo_home: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    """Quarantined raw values go through the real pipeline into every store it writes; after
    retention, a scan of every byte under the home (DuckDB files, Dagster's SQLite databases,
    Parquet, exports, logs, MLflow, Feast, Data Docs) finds none of them."""
    paths = demo_home
    home = ["--home", str(paths.home), "--domain", "consumer_credit"]
    _land_bad_rows(paths, "2018-01-05")
    main([*home, "run", "--partition", "2018-01-05"])
    with audit_connection(paths.audit_db, read_only=True) as con:
        held = scalar(con, "SELECT count(*) FROM quarantine WHERE value LIKE 'INCOME-%'")
    assert held == 3
    before = _holders(paths.home)
    assert all(before.values())  # the scan can see them (landing file at least)

    capsys.readouterr()
    sign = demo_signing_key(paths.home, "demo-compliance")  # deletions are signed
    main([*home, "retention", "apply", "--as-of", "2020-02-15", *sign])
    assert "rewrote" in capsys.readouterr().out
    after = _holders(paths.home)
    assert after == {s: [] for s in SECRETS}, after
    with verifying_session(paths) as con:
        report = verify_home(con, paths, None)
        assert report.ok, report.summary()
