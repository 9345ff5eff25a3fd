"""The bad-input corpus (`tests/data/bad_inputs/`): every case gives its expected, clear outcome.

Each case's files land in a day folder of a fresh landing zone and go through the same
ingestion as the pipeline. For every case: the whole-file error or the row checks are the ones
the manifest expects, every message names the file (and the row and column for row failures),
and nothing is lost: each data row read is accepted or quarantined, never both, never neither.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.ingest.landing import IngestResult, ingest_files
from hitl_gate.ingest.listing import DayListing, LandingRules, list_day_folder
from hitl_gate.ingest.names import shown

CORPUS = Path(__file__).parents[2] / "data" / "bad_inputs"
MANIFEST: dict[str, dict] = yaml.safe_load((CORPUS / "manifest.yaml").read_text(encoding="utf-8"))
DAY = date(2018, 1, 3)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _stage(folder: Path, case: str, spec: dict) -> tuple[dict[str, Path], list[threading.Thread]]:
    """Land the case's files under their landed names, as the manifest's staging says."""
    staging = spec.get("staging", {})
    landed = spec.get("landed", {})
    now = time.time()
    paths, writers = {}, []
    for stored in spec["files"]:
        name = landed.get(stored, stored)
        data = (CORPUS / "cases" / case / stored).read_bytes()
        path = folder / name
        if name in staging.get("still_writing", []):
            path.write_bytes(data[: len(data) // 2])
            later = staging["settle_seconds"] / 3
            writers.append(threading.Thread(target=_finish_later, args=(path, data, later)))
        else:
            path.write_bytes(data)
        if name in staging.get("mtime_offsets", {}):
            stamp = now + staging["mtime_offsets"][name]
            os.utime(path, (stamp, stamp))
        paths[name] = path
    for name in staging.get("dirs", []):
        (folder / name).mkdir()
    return paths, writers


def _finish_later(path: Path, data: bytes, seconds: float) -> None:
    """A writer still at work: the rest of the file arrives while the listing settles (a third
    of the interval in: after the listing's first look, well before its second)."""
    time.sleep(seconds)
    with path.open("ab") as handle:
        handle.write(data[len(data) // 2 :])


def _ingest(tmp_path: Path, domain: DomainConfig, case: str) -> tuple[IngestResult, DayListing]:
    spec = MANIFEST[case]
    staging = spec.get("staging", {})
    folder = tmp_path / domain.landing_subdir / DAY.isoformat()
    folder.mkdir(parents=True)
    paths, writers = _stage(folder, case, spec)
    contract = domain.contract
    if "contract_formats" in staging:
        contract = contract.model_copy(update={"formats": tuple(staging["contract_formats"])})
    rules = LandingRules(
        formats=contract.formats,
        marker=staging.get("marker"),
        settle_seconds=staging.get("settle_seconds", 0.0),
    )
    for writer in writers:
        writer.start()
    listing = list_day_folder(folder, DAY, rules)
    for writer in writers:
        writer.join()
    for name in staging.get("append_after_listing", []):
        with paths[name].open("ab") as handle:
            handle.write(b"BAD-LATE,appended\n")
    result = ingest_files(listing.files, contract, domain.case_id, domain.case_id_pattern)
    return result, listing


def test_the_corpus_has_at_least_forty_cases_each_with_its_files() -> None:
    assert len(MANIFEST) >= 40
    for case, spec in MANIFEST.items():
        assert spec["about"] and spec["files"], case
        for name in spec["files"]:
            assert (CORPUS / "cases" / case / name).is_file(), (case, name)


def test_the_corpus_has_at_least_thirty_hostile_landing_cases() -> None:
    """Issue 19: names, ids, partial files and formats, each staged under its landed name."""
    hostile = [case for case, spec in MANIFEST.items() if spec.get("landed")]
    assert len(hostile) >= 30
    for prefix in ("name_", "id_", "partial_", "refused_"):
        assert any(case.startswith(prefix) for case in hostile), prefix


@pytest.mark.parametrize("case", sorted(MANIFEST))
def test_bad_input_case(tmp_path: Path, domain: DomainConfig, case: str) -> None:
    spec = MANIFEST[case]
    result, listing = _ingest(tmp_path, domain, case)
    files, quarantine, accepted = result.files, result.quarantine, result.accepted

    # Every entry of the folder is taken or refused with the expected reason, none both.
    landed_names = [spec.get("landed", {}).get(n, n) for n in spec["files"]]
    entries = len(landed_names) + len(spec.get("staging", {}).get("dirs", []))
    assert listing.seen == entries == len(listing.files) + len(listing.refused)
    assert {r.path.name: r.reason for r in listing.refused} == spec.get("refused", {})
    assert sorted(f.path.name for f in listing.files) == sorted(
        n for n in landed_names if n not in spec.get("refused", {})
    )
    for refused in listing.refused:
        assert refused.message.startswith(shown(refused.path) + ": refused (")
        assert "\n" not in refused.message and "\r" not in refused.message

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
        assert "\n" not in entry["message"] and "\r" not in entry["message"], entry
        if entry["row_number"] is None:
            assert entry["message"].startswith(shown(entry["file_path"]) + ": "), entry
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
