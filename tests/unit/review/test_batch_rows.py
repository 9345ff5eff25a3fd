"""A case's row of a batch file is the same whatever batch it is cut into.

The exporter masks a queue's cases and builds their rows, case files and digests once per
queue (`queue_view`), then cuts batches from them; this test pins that to exporting each case on
its own (its view and batch built from that one case, as rows were built per batch before),
byte for byte in the CSV (but the batch id) and in the manifest's digests, four-eyes list and
suggested actions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hitl_gate.core.domain import load_domain
from hitl_gate.review.export.batches import BATCH_COLUMN, CSV_NAME, export_review_batches
from hitl_gate.review.manifest import MANIFEST_NAME
from hitl_gate.review.settings import review_settings
from tests.review_fixtures import batch_export, review_cases


def _per_case(batches_dir: Path) -> dict[str, tuple[list[str], str, bool, object]]:
    """Per case id: its CSV row without the batch id, its digest, whether it is four-eyes and
    its suggested action, as the batch files give them."""
    found: dict[str, tuple[list[str], str, bool, object]] = {}
    for manifest_path in sorted(batches_dir.rglob(MANIFEST_NAME)):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        with (manifest_path.parent / CSV_NAME).open(encoding="utf-8", newline="") as handle:
            header, *rows = list(csv.reader(handle))
        assert header == manifest["columns"]
        at = header.index(BATCH_COLUMN)
        for row, case_id in zip(rows, manifest["case_ids"], strict=True):
            assert row[at] == manifest["batch_id"]
            found[case_id] = (
                [*header[:at], *header[at + 1 :]] + [*row[:at], *row[at + 1 :]],
                manifest["case_digests"][case_id],
                case_id in manifest.get("four_eyes_cases", []),
                manifest.get("suggested_actions", {}).get(case_id),
            )
    return found


def test_a_case_row_does_not_depend_on_its_batch(tmp_path: Path, key: bytes) -> None:
    domain = load_domain("consumer_credit")
    settings = review_settings(domain)
    assert settings is not None
    cases = review_cases()
    batched = export_review_batches(
        cases, batch_export(domain, tmp_path / "together", key, settings=settings)
    )
    alone = batch_export(domain, tmp_path / "alone", key, settings=settings)
    for index in range(cases.height):
        assert len(export_review_batches(cases.slice(index, 1), alone)) == 1
    assert any(len(b.case_ids) > 1 for b in batched)
    assert any(b.role is not None for b in batched)  # masked for a role
    rows = _per_case(tmp_path / "together")
    assert sorted(rows) == sorted(cases["application_id"].to_list())
    assert rows == _per_case(tmp_path / "alone")
    assert any(four_eyes for _, _, four_eyes, _ in rows.values())
    assert any(action for _, _, _, action in rows.values())
