"""Property: for any file names and case ids a landing zone may hold, over two days,
files seen = files ingested + files refused, rows read = rows accepted + rows quarantined,
and no application is accepted (so decided, so executed) twice, look-alike ids included.

File names mix pattern characters (`[ ] * ?`), spaces, Unicode, control characters and
newlines, with data, unsupported, hidden and temporary suffixes; ids are a few real ids and
their look-alikes (trailing spaces, no-break space, full-width, zero-width, non-breaking hyphen,
Cyrillic). Both days go through the real registry and recording (DuckDB in a temporary folder).
"""

from __future__ import annotations

import tempfile
import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import load_domain
from hitl_gate.ingest.day_batch import read_new_files, record_day_batch, registered_files_frame
from hitl_gate.ingest.landing_registry import files_balance, record_listings, register_files
from hitl_gate.ingest.listing import LandingRules, list_day_folder
from tests.blank_audit_db import blank_if_missing
from tests.data.bad_inputs.build_corpus import base

pytestmark = pytest.mark.slow

DOMAIN = load_domain("consumer_credit")
BASE = base()
DAYS = (date(2018, 1, 3), date(2018, 1, 4))
NOW = datetime(2018, 1, 5, tzinfo=UTC)
RULES = LandingRules(formats=("csv", "tsv", "jsonl"), settle_seconds=0.0)

NAME_CHARS = st.sampled_from(
    list("ab1_-. []*?{}!'~$") + ["\n", "\r", "\t", "\x07", "\u200b", "\u202e", "\u00e9", "\u7533"]
)
SUFFIXES = [".csv", ".CSV", ".tsv", ".jsonl", ".txt", ".csv.tmp", ".part", "~", ""]
IDS = ["P-1", "P-2", "P-3", "P-4"]
LOOKS = [
    lambda i: i,
    lambda i: i + " ",
    lambda i: " " + i + "\t",
    lambda i: i + "\u00a0",
    lambda i: "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in i),
    lambda i: "\u200b" + i,
    lambda i: i.replace("-", "\u2011"),
    lambda i: i.replace("P", "\u0420"),
]


@st.composite
def landed_file(draw: st.DrawFn) -> tuple[str, list[str], int]:
    """A file name, the ids of its rows, and its day (0 or 1)."""
    stem = draw(st.text(NAME_CHARS, min_size=1, max_size=12))
    name = draw(st.sampled_from(["", "."])) + stem + draw(st.sampled_from(SUFFIXES))
    ids = [
        draw(st.sampled_from(LOOKS))(draw(st.sampled_from(IDS)))
        for _ in range(draw(st.integers(1, 3)))
    ]
    return name, ids, draw(st.integers(0, 1))


def _write(path: Path, ids: list[str]) -> None:
    frame = pl.concat([BASE.head(1)] * len(ids)).with_columns(application_id=pl.Series(ids))
    if path.name.lower().endswith(".jsonl"):
        frame.write_ndjson(path)
    else:
        frame.write_csv(path, separator="\t" if ".tsv" in path.name.lower() else ",")


def _usable(name: str) -> bool:
    return name not in (".", "..") and len(name.encode()) < 200


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(landed_file(), min_size=1, max_size=6, unique_by=lambda f: f[0]))
def test_files_and_rows_balance_and_no_case_is_accepted_twice(
    landed: list[tuple[str, list[str], int]],
) -> None:
    domain = DOMAIN.model_copy(
        update={"contract": DOMAIN.contract.model_copy(update={"formats": RULES.formats})}
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        written = [0, 0]
        for name, ids, day in landed:
            if not _usable(name):
                continue
            folder = root / domain.landing_subdir / DAYS[day].isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            _write(folder / name, ids)
            written[day] += 1
        with audit_connection(blank_if_missing(root / "audit.duckdb")) as con:
            for i, day in enumerate(DAYS):
                folder = root / domain.landing_subdir / day.isoformat()
                listing = list_day_folder(folder, day, RULES)
                # Files: every entry taken or refused, in memory and in the database.
                assert listing.seen == written[i] == len(listing.files) + len(listing.refused)
                raw = registered_files_frame(
                    register_files(con, domain.name, listing.files, f"run-{i}", NOW)
                )
                record_listings(con, domain.name, [listing], {day: str(folder)}, f"run-{i}", NOW)
                result = read_new_files(raw, domain)
                record_day_batch(con, domain, result, raw, [day], f"run-{i}", NOW)
                (balance,) = files_balance(con, domain.name, [day]).iter_rows(named=True)
                assert balance["balanced"], balance
            files = query_frame(
                con, "SELECT rows_read, rows_accepted, rows_quarantined FROM input_files"
            )
            accepted = query_frame(con, "SELECT case_id FROM accepted_cases")["case_id"]
    # Rows: each read row accepted or quarantined.
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_quarantined"]).all()
    # Never twice: an application (its canonical id) is accepted once over both days, and
    # only canonical ids of the declared form are ever accepted.
    ids = accepted.to_list()
    assert len(ids) == len(set(ids))
    canonical = [unicodedata.normalize("NFKC", i).strip() for i in ids]
    assert ids == canonical
    assert set(ids) <= set(IDS)
