"""The bad-input corpus (`tests/data/bad_inputs/`): every case gives its expected, clear outcome.

Each case's files land in a day folder of a fresh landing zone and go through the same
ingestion as the pipeline. For every case: the whole-file error or the row checks are the ones
the manifest expects, every message names the file (and the row and column for row failures),
and nothing is lost: each data row read is accepted or quarantined, never both, never neither.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.ingest.landing import IngestResult, discover_landing_files, ingest_files

CORPUS = Path(__file__).parents[2] / "data" / "bad_inputs"
MANIFEST: dict[str, dict] = yaml.safe_load((CORPUS / "manifest.yaml").read_text(encoding="utf-8"))
DAY = date(2018, 1, 3)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _ingest(tmp_path: Path, domain: DomainConfig, case: str) -> IngestResult:
    folder = tmp_path / domain.landing_subdir / DAY.isoformat()
    folder.mkdir(parents=True)
    for name in MANIFEST[case]["files"]:
        shutil.copy(CORPUS / "cases" / case / name, folder / name)
    files = discover_landing_files(tmp_path, domain.landing_subdir, DAY)
    assert [f.path.name for f in files] == MANIFEST[case]["files"]
    return ingest_files(files, domain.contract, domain.case_id)


def test_the_corpus_has_at_least_forty_cases_each_with_its_files() -> None:
    assert len(MANIFEST) >= 40
    for case, spec in MANIFEST.items():
        assert spec["about"] and spec["files"], case
        for name in spec["files"]:
            assert (CORPUS / "cases" / case / name).is_file(), (case, name)


@pytest.mark.parametrize("case", sorted(MANIFEST))
def test_bad_input_case(tmp_path: Path, domain: DomainConfig, case: str) -> None:
    spec = MANIFEST[case]
    result = _ingest(tmp_path, domain, case)
    files, quarantine, accepted = result.files, result.quarantine, result.accepted

    # The expected outcome, no more and no less.
    rejected = dict(
        quarantine.filter(pl.col("row_number").is_null()).select("file_path", "check").rows()
    )
    assert {Path(p).name: c for p, c in rejected.items()} == spec["file_errors"]
    row_entries = quarantine.filter(pl.col("row_number").is_not_null())
    assert dict(Counter(row_entries["check"])) == spec["row_checks"]
    assert int(files["rows_read"].sum()) == spec["rows_read"]
    assert accepted.height == spec["rows_accepted"]

    # Clear errors: the file always, and the row and column for a row failure.
    for entry in quarantine.iter_rows(named=True):
        if entry["row_number"] is None:
            assert entry["message"].startswith(entry["file_path"] + ": "), entry
        else:
            assert entry["column"] and entry["check"], entry
            assert f"row {entry['row_number']}:" in entry["message"], entry
            assert entry["column"].split(",")[0] in entry["message"], entry

    # Nothing lost: per file, every data row is accepted or quarantined, exactly one of them.
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_quarantined"]).all()
    for row in files.iter_rows(named=True):
        if row["status"] == "rejected":
            continue
        taken = set(accepted.filter(pl.col("_source_file") == row["file_path"])["_source_row"])
        held = set(row_entries.filter(pl.col("file_path") == row["file_path"])["row_number"])
        assert not taken & held
        assert len(taken | held) == row["rows_read"]
