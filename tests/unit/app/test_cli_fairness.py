"""`hitl fairness report`: a period's table from the audit database and the stored protected
values, exit 1 when the adverse impact check blocks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from tests.unit.observability.test_daily import decision_rows, seed

DAY = date(2024, 3, 4)


def _declare(root: Path, name: str = "cc_fair", protected: bool = True) -> None:
    """The shipped consumer credit declaration under another name, homeownership protected
    (or, with `protected=False`, nothing declared protected)."""
    shipped = load_domain("consumer_credit").source_dir / "domain.yaml"
    data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    data["name"] = name
    data["protected_attributes"] = (
        {"homeownership": {"category": "other", "reference": "OWN"}} if protected else {}
    )
    folder = root / "domains" / name
    folder.mkdir(parents=True)
    (folder / "domain.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


def test_report_prints_the_table_and_blocks_on_a_real_disparity(
    tmp_path: Path, hitl_paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    _declare(tmp_path / "root")
    routes = ["auto_approve"] * 40 + ["auto_approve"] * 10 + ["auto_decline"] * 30
    decisions = decision_rows(DAY, routes, "run-1", domain="cc_fair")
    with audit_connection(hitl_paths.audit_db) as con:
        seed(con, decisions)
    stored = hitl_paths.warehouse / "cc_fair" / "validated_cases"
    stored.mkdir(parents=True)
    pl.DataFrame(
        {
            "application_id": decisions["case_id"],
            "homeownership": ["OWN"] * 40 + ["RENT"] * 40,
        }
    ).write_parquet(stored / f"{DAY}.parquet")
    cli = ["--home", str(hitl_paths.home), "--domains-dir", str(tmp_path / "root" / "domains")]
    report = [*cli, "--domain", "cc_fair", "fairness", "report", "--from", "2024-03-01"]
    with pytest.raises(SystemExit) as exit_info:
        main([*report, "--to", "2024-03-31"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "cc_fair: fairness from 2024-03-01 to 2024-03-31, 80 cases" in out
    assert "fairness_adverse_impact: FAILED (ERROR)" in out
    assert "homeownership=RENT at final_action: AIR 0.25" in out
    # Outside the period: no case, nothing fails.
    main([*cli, "--domain", "cc_fair", "fairness", "report", "--from", "2024-04-01",
          "--to", "2024-04-30"])  # fmt: skip
    assert "0 cases" in capsys.readouterr().out
    _declare(tmp_path / "root", "cc_plain", protected=False)
    with pytest.raises(SystemExit, match="no protected_attributes declared"):
        main([*cli, "--domain", "cc_plain", "fairness", "report", "--from", "2024-03-01",
              "--to", "2024-03-31"])  # fmt: skip
