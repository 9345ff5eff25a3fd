"""Retention applied to a copy of the demo home: expired personal data goes, the audit chain
stays verifiable (the rules: tests/unit/audit/test_retention.py)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.audit.keys import load_or_create_signing_key
from hitl_gate.audit.retention import REDACTED
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, scalar
from hitl_gate.core.home import HitlPaths
from tests.signed_acts_fixtures import demo_signing_key

COPIED = ("audit.duckdb", "audit.duckdb.wal", "checkpoints", "secrets", "landing", "warehouse",
          "review_exports", "demo-keys")  # fmt: skip


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
    key = load_or_create_signing_key(paths.audit_key_file)
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
    assert not list(paths.review_batches.glob("consumer_credit-20180103-*"))
    assert list(paths.review_batches.glob("consumer_credit-20180116-*"))
    assert list(paths.review_batches.glob("lending_club-*"))  # another domain: untouched
    with audit_connection(paths.audit_db, read_only=True) as con:
        value, message = con.execute(
            "SELECT value, message FROM quarantine WHERE case_id = 'LC18Q1-Q1'"
        ).fetchone()
        assert value is None and message == f"'{REDACTED}' is not a number"
        kinds = dict(
            con.execute("SELECT kind, count(*) FROM retention_actions GROUP BY ALL").fetchall()
        )
        assert {"landing_file", "stored_partition", "review_batch", "verdict_file",
                "quarantine_values"} <= kinds.keys()  # fmt: skip
        report = verify_audit(con, paths.checkpoints_dir, None)
        assert report.ok, report.summary()
        logged = scalar(
            con, "SELECT count(*) FROM audit_events WHERE event_type = 'retention_applied'"
        )
        assert logged == sum(kinds.values())  # each removal is itself in the chain
        size = scalar(con, "SELECT count(*) FROM audit_log")
    main(["--home", str(paths.home), "audit", "verify"])
    assert "OK" in capsys.readouterr().out

    main([*home, "retention", "apply", "--as-of", "2020-02-15", *sign])  # again: nothing to do
    with audit_connection(paths.audit_db, read_only=True) as con:
        assert scalar(con, "SELECT count(*) FROM audit_log") == size
