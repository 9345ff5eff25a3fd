"""Files that reached a day's landing folder after that day ran: late or re-delivered data.

The landing sensor (pipelines/sensors.py) asks this module which days to run again. A file
counts when its day has already been materialised and its bytes are not in the registry
(`file_versions`): a re-run of the day then ingests it, and the registry makes the re-run
count every row once. Files the registry already knows by path, size and arrival time are
not even re-hashed, so a tick costs a directory listing plus hashing only what is new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from hitl_gate.core.database import query_frame
from hitl_gate.ingest.listing import (
    LandingFile,
    LandingRules,
    arrival_time,
    fingerprint,
    survey_day_folder,
)


@dataclass(frozen=True)
class KnownFiles:
    """What the registry holds for a domain: file identities and content hashes."""

    stats: frozenset[tuple[str, int, datetime]]  # (path, size, arrival) of registered files
    sha256: frozenset[str]


@dataclass(frozen=True)
class LateDelivery:
    """New files of one day that already ran; one re-run of the day takes them all in."""

    day: date
    files: tuple[LandingFile, ...]

    @property
    def run_key(self) -> str:
        """The file's SHA-256 (for several files, the hash of their sorted hashes): a given
        delivery starts one run however many ticks see it."""
        hashes = sorted(f.sha256 for f in self.files)
        if len(hashes) == 1:
            return hashes[0]
        return hashlib.sha256("+".join(hashes).encode("ascii")).hexdigest()


def known_files(con: duckdb.DuckDBPyConnection, domain: str) -> KnownFiles:
    """The domain's registered files (table `file_versions`)."""
    frame = query_frame(
        con,
        "SELECT file_path, size_bytes, arrived_at, file_sha256 FROM file_versions WHERE domain = ?",
        [domain],
    )
    stats = frozenset(
        (path, int(size), arrived)
        for path, size, arrived, _ in frame.iter_rows()
        if arrived is not None
    )
    return KnownFiles(stats=stats, sha256=frozenset(frame["file_sha256"].to_list()))


def _day(folder: Path) -> date | None:
    try:
        return date.fromisoformat(folder.name)
    except ValueError:
        return None


def late_deliveries(
    landing_dir: Path,
    ran_days: Iterable[date],
    known: KnownFiles,
    rules: LandingRules | None = None,
) -> list[LateDelivery]:
    """Days in `ran_days` whose folder under `landing_dir` holds complete files of unknown content.

    A file still settling (or waiting for its marker) is not offered yet: its hash changes while
    it is written, and every tick would otherwise start another run.
    """
    rules = rules or LandingRules()
    ran = set(ran_days)
    if not landing_dir.is_dir():
        return []
    found = []
    for folder in sorted(landing_dir.iterdir()):
        day = _day(folder)
        if day is None or day not in ran:
            continue
        new = []
        _, complete, _ = survey_day_folder(folder, day, rules, wait=False)
        for path in complete:
            stat = path.stat()
            arrived = arrival_time(stat.st_mtime)
            if (str(path), stat.st_size, arrived) in known.stats:
                continue
            landed = fingerprint(path, day)
            if landed.sha256 not in known.sha256:
                new.append(landed)
        if new:
            found.append(LateDelivery(day, tuple(new)))
    return found
