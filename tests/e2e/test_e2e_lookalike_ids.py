"""End to end: look-alike case ids on a later day never become a second application.

An application decided and executed on one day arrives again on the next under ids that look
the same (a trailing space, a trailing no-break space, full-width letters, a zero-width space,
a non-breaking hyphen, a Cyrillic letter). Through the real pipeline (`hitl run`), each is
either recognised as the same canonical id (and withheld: the case is held by the earlier day)
or quarantined as not canonical; the application is executed exactly once.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.home import HitlPaths
from tests.e2e.landed import settled

pytestmark = pytest.mark.e2e

EARLIER, DAY = "2018-01-05", "2018-01-06"


def _day_file(paths: HitlPaths, day: str) -> Path:
    return next((paths.landing / "applications" / day).glob("applications_*.csv"))


def test_a_lookalike_of_an_executed_case_is_never_executed_again(demo_home: HitlPaths) -> None:
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        executed = query_frame(
            con,
            "SELECT case_id FROM executions WHERE partition_date = ? ORDER BY case_id LIMIT 1",
            [date.fromisoformat(EARLIER)],
        )
    (case_id,) = executed["case_id"].to_list()
    header, *lines = _day_file(demo_home, EARLIER).read_text().splitlines()
    row = next(line for line in lines if line.split(",")[0] == case_id)
    rest = row.split(",", 1)[1]
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in case_id)
    # The first three are the case itself once canonical: the first file's row is withheld
    # (the earlier day holds the case), the next two repeat it within the day.
    variants = {
        f'"{case_id} "': "duplicate_case_id_across_partitions",
        f"{case_id}\u00a0": "duplicate_case_id",
        fullwidth: "duplicate_case_id",
        f"\u200b{case_id}": "case_id_form",
        case_id.replace("-", "\u2011"): "case_id_form",
        case_id.replace("C", "\u0421"): "case_id_form",
    }
    # One file per variant: within one file they would be duplicates of each other first.
    folder = demo_home.landing / "applications" / DAY
    for i, variant in enumerate(variants):
        (folder / f"lookalike_{i}.csv").write_text(f"{header}\n{variant},{rest}\n")
    settled(*folder.glob("lookalike_*.csv"))

    main(["--home", str(demo_home.home), "run", "--partition", DAY])

    day = date.fromisoformat(DAY)
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        runs = scalar(con, "SELECT count(*) FROM executions WHERE case_id = ?", [case_id])
        executed_ids = query_frame(
            con, "SELECT case_id FROM executions WHERE domain = 'consumer_credit'"
        )["case_id"].to_list()
        held = query_frame(
            con,
            "SELECT regexp_extract(file_path, '[^/]+$') AS file, check_name FROM quarantine "
            "WHERE partition_date = ? AND file_path LIKE '%lookalike_%' ORDER BY file",
            [day],
        )
        balanced = scalar(
            con, "SELECT balanced FROM partition_accounting WHERE partition_date = ?", [day]
        )
    assert runs == 1
    # No other execution is the same application under another spelling, and every executed
    # id is in the declared canonical form.
    same = [c for c in executed_ids if unicodedata.normalize("NFKC", c).strip() == case_id]
    assert same == [case_id]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}", c) for c in executed_ids)
    assert held["check_name"].to_list() == list(variants.values())
    assert balanced
