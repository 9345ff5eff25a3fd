"""Retention: expired personal data goes, the audit chain stays verifiable, and nothing younger
than the legal minimum is ever removed (refused whole, before anything is touched)."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from hitl_gate.app.cli import main
from hitl_gate.audit.keys import load_or_create_signing_key
from hitl_gate.audit.retention import REDACTED, add_months, expired
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.domain import RetentionConfig, load_domain
from hitl_gate.core.home import HitlPaths

COPIED = ("audit.duckdb", "audit.duckdb.wal", "checkpoints", "secrets", "landing", "warehouse",
          "review_exports")  # fmt: skip


def test_months_are_calendar_months_and_the_period_is_kept_in_full() -> None:
    assert add_months(date(2018, 1, 31), 1) == date(2018, 2, 28)
    assert add_months(date(2019, 11, 30), 3) == date(2020, 2, 29)
    assert add_months(date(2018, 1, 15), 25) == date(2020, 2, 15)
    assert not expired(date(2018, 1, 16), 25, date(2020, 2, 15))
    assert expired(date(2018, 1, 15), 25, date(2020, 2, 15))


def test_a_declaration_keeping_personal_data_less_than_the_legal_minimum_is_refused() -> None:
    assert RetentionConfig().legal_minimum_months == 25  # credit: Regulation B
    with pytest.raises(ValidationError, match="raw_inputs_months = 12"):
        RetentionConfig(raw_inputs_months=12)
    with pytest.raises(ValidationError, match="reviewer_files_months = 30"):
        RetentionConfig(legal_minimum_months=36, raw_inputs_months=36,
                        quarantined_values_months=40, reviewer_files_months=30)  # fmt: skip
    assert load_domain("consumer_credit").retention.raw_inputs_months >= 25


def test_a_domain_file_with_too_short_a_retention_fails_at_load(tmp_path: Path) -> None:
    from hitl_gate.core.domain import PROJECT_ROOT, DomainConfigError, load_domain_file

    source = (PROJECT_ROOT / "domains" / "lending_club" / "domain.yaml").read_text("utf-8")
    assert "raw_inputs_months: 25" in source
    broken = tmp_path / "domains" / "lending_club" / "domain.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text(source.replace("raw_inputs_months: 25", "raw_inputs_months: 12"))
    with pytest.raises(DomainConfigError, match="raw_inputs_months = 12"):
        load_domain_file(broken)


def _landing_file(paths: HitlPaths, day: date) -> Path:
    folder = paths.landing / load_domain("consumer_credit").landing_subdir / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"applications_{day}.csv"
    path.write_text("application_id\nX-1\n", encoding="utf-8")
    return path


def test_a_request_reaching_data_younger_than_the_legal_minimum_removes_nothing(
    hitl_paths: HitlPaths,
) -> None:
    """`--as-of` in the future would make last month's file look expired: refused whole."""
    today = datetime.now(UTC).date()
    young = _landing_file(hitl_paths, add_months(today, -1))
    old = _landing_file(hitl_paths, add_months(today, -30))
    with audit_connection(hitl_paths.audit_db):
        pass  # an empty audit database
    home = ["--home", str(hitl_paths.home), "--domain", "consumer_credit"]
    future = add_months(today, 36).isoformat()
    with pytest.raises(SystemExit, match="refused, nothing removed: 1 items are younger"):
        main([*home, "retention", "apply", "--as-of", future])
    assert young.exists() and old.exists()
    with audit_connection(hitl_paths.audit_db, read_only=True) as con:
        assert scalar(con, "SELECT count(*) FROM retention_actions") == 0
        assert scalar(con, "SELECT count(*) FROM audit_log") == 0

    main([*home, "retention", "apply"])  # as of today: only the 30-month-old file has expired
    assert young.exists() and not old.exists() and not old.parent.exists()
    with audit_connection(hitl_paths.audit_db, read_only=True) as con:
        actions = query_frame(con, "SELECT kind, target, sha256 FROM retention_actions")
        assert actions["target"].to_list() == [str(old)]
        assert verify_audit(con, hitl_paths.checkpoints_dir, None).ok
        logged = scalar(con, "SELECT count(*) FROM audit_log_index "
                             "WHERE event_type = 'retention_applied'")  # fmt: skip
        assert logged == 1


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
    return HitlPaths.from_env(home)


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

    main([*home, "retention", "apply", "--as-of", "2020-02-15"])
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

    main([*home, "retention", "apply", "--as-of", "2020-02-15"])  # again: nothing left to do
    with audit_connection(paths.audit_db, read_only=True) as con:
        assert scalar(con, "SELECT count(*) FROM audit_log") == size
