"""The review workspaces' copied set-up (`Workspace._set_up_from_template`) is the SQL set-up.

A workspace's first signed ingest (and `person_assigned`, `sign_as`) on the blank audit file
copies a file the same set-up wrote once per process; the tests that use it are only as strong
as that copy is exact. Compared here table by table with the set-up by SQL, in another folder
(the batch folders must name each workspace's own) and in the same one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection
from tests.review_fixtures import Workspace, make_workspace

pytestmark = pytest.mark.slow  # the registry's acts are signed with ssh-keygen keys

TABLES = {
    "people_acts": "SELECT * EXCLUDE (recorded_at) FROM people_acts ORDER BY ALL",
    "review_batches": "SELECT * FROM review_batches ORDER BY ALL",
    "review_batch_cases": "SELECT * FROM review_batch_cases ORDER BY ALL",
    "review_assignments": "SELECT * FROM review_assignments ORDER BY ALL",
}


def _tables(ws: Workspace) -> dict[str, list[tuple]]:
    with audit_connection(ws.db) as con:
        return {name: con.execute(sql).fetchall() for name, sql in TABLES.items()}


def _by_sql(root: Path, key: bytes, who: str, batch: str) -> Workspace:
    ws = make_workspace(root, key)
    ws.blank_stamp = None  # as if the file had changed: the set-up by SQL
    ws.person_assigned(who, batch)
    return ws


@pytest.mark.parametrize("who", ["analyst-7", "uw-ana"])
def test_a_copied_set_up_holds_the_rows_the_sql_writes(
    tmp_path: Path, key: bytes, who: str
) -> None:
    queue = "credit_analyst" if who == "analyst-7" else "senior_underwriter"
    first = make_workspace(tmp_path / "first", key)
    batch = first.batches[queue].batch_id
    first.person_assigned(who, batch)  # made by SQL (or copied, if made before in this process)
    copied = make_workspace(tmp_path / "copied", key)
    copied.person_assigned(who, batch)
    assert copied.blank_stamp is None and copied.registered == {"admin", who}
    expected = _by_sql(tmp_path / "sql", key, who, batch)
    tables, wanted = _tables(copied), _tables(expected)
    assert wanted["people_acts"] and wanted["review_assignments"]
    for name in TABLES:
        rows = tables[name]
        if name == "review_batches":  # each workspace's batch folders are its own
            assert {r[4] for r in rows} == {str(b.folder) for b in copied.batches.values()}
            rows = [r[:4] + (r[4].replace(str(copied.root), str(expected.root)),) + r[5:]
                    for r in rows]  # fmt: skip
        assert rows == wanted[name], name
    # In the folder the copy was made in (its batch folders already right): the same rows.
    made = _tables(first)
    assert {**made, "review_batches": wanted["review_batches"]} == wanted
    shutil.rmtree(first.root)
    again = make_workspace(first.root, key)
    again.person_assigned(who, batch)
    assert again.blank_stamp is None
    assert _tables(again) == made
