"""A verdict on a gold case is the reviewer's opinion, scored; never a final verdict, however
the returned file is made (a signed file with the gold row answered like any other)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection
from tests.review_fixtures import CREATED, DAY, make_workspace

pytestmark = pytest.mark.slow  # verdict files and registry acts signed by ssh-keygen

ANALYST = "credit_analyst"


def test_a_gold_row_answered_in_a_signed_file_is_an_opinion_never_final(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    with (ws.batches[ANALYST].folder / "cases.csv").open(encoding="utf-8") as handle:
        first, second = [row["application_id"] for row in csv.DictReader(handle)][:2]
    with audit_connection(ws.db) as con:  # the first row of the batch is a gold case
        con.execute(
            "INSERT INTO review_gold_cases VALUES ('consumer_credit', ?, 'APP-old', 'decline', "
            "'outcome', ?, ?, ?)",
            [first, ANALYST, DAY, CREATED],
        )
    answers = {"verdict": "approve", "reviewer_id": "analyst-7", "rationale": "fine"}
    path = ws.fill_csv(ANALYST, "worked.csv", {0: answers, 1: answers})
    outcome = ws.ingest(path)
    assert outcome.accepted == 2, outcome.summary()
    assert ws.count("SELECT count(*) FROM verdicts WHERE case_id = ?", [first]) == 0
    assert ws.count("SELECT count(*) FROM verdicts WHERE case_id = ?", [second]) == 1
    assert ws.count("SELECT count(*) FROM verdict_opinions WHERE case_id = ?", [first]) == 1
