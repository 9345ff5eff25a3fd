"""Retention: expired personal data goes, the audit chain stays verifiable, and nothing younger
than the legal minimum is ever removed (refused whole, before anything is touched)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from hitl_gate.app.cli import main
from hitl_gate.audit.retention import add_months, expired
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.domain import RetentionConfig, load_domain
from hitl_gate.core.home import HitlPaths
from tests.signed_acts_fixtures import staffed_home


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
    keys = staffed_home(hitl_paths.audit_db, hitl_paths.home.parent)  # no audit rows yet
    home = ["--home", str(hitl_paths.home), "--domain", "consumer_credit"]
    sign = ["--signing-key", str(keys.private("cora"))]  # a compliance officer signs deletions
    future = add_months(today, 36).isoformat()
    with pytest.raises(SystemExit, match="refused, nothing removed: 1 items are younger"):
        main([*home, "retention", "apply", "--as-of", future, *sign])
    assert young.exists() and old.exists()
    with audit_connection(hitl_paths.audit_db, read_only=True) as con:
        assert scalar(con, "SELECT count(*) FROM retention_actions") == 0
        assert scalar(con, "SELECT count(*) FROM audit_log") == 0

    main([*home, "retention", "apply", *sign])  # as of today: only the 30-month-old file expired
    assert young.exists() and not old.exists() and not old.parent.exists()
    with audit_connection(hitl_paths.audit_db, read_only=True) as con:
        actions = query_frame(con, "SELECT kind, target, sha256 FROM retention_actions "
                                   "WHERE kind <> 'store_rewrite'")  # fmt: skip
        assert actions["target"].to_list() == [str(old)]
        rewrites = query_frame(con, "SELECT target FROM retention_actions "
                                    "WHERE kind = 'store_rewrite'")  # fmt: skip
        assert [t.split(" ")[0] for t in rewrites["target"]] == ["audit.duckdb"]
        assert verify_audit(con, hitl_paths.checkpoints_dir, None).ok
        logged = scalar(con, "SELECT count(*) FROM audit_log_index "
                             "WHERE event_type = 'retention_applied'")  # fmt: skip
        assert logged == 2  # the removal and the rewrite it asked for
