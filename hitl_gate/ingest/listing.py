"""One day folder of the landing zone, every entry accounted for: taken, or refused with a reason.

The folder is listed once with `os.scandir` (names are never patterns) and each entry is
classified: a complete data file in a format the contract allows is taken and fingerprinted;
anything else is refused with its reason (`hidden`, `temporary`, `unsupported_type`,
`not_a_file`, `marker`, `incomplete`, `vanished`), so files seen = files taken + files refused,
by construction here and checked again on what the database records (`landing_listings`
against `input_files`, the blocking asset check `files_balance`).

A file is complete when (a) the domain declares a marker file (such as `_SUCCESS`), the marker
is in the folder and the file was last modified before it; or, without a marker, (b) its size
and modification time stay the same over the settle interval (`HITL_LANDING_SETTLE_SECONDS`):
a file modified less than that long ago is looked at again once the interval has passed, and
refused as `incomplete` if it changed. A refused incomplete file is not registered, so the
landing sensor offers the day again once the file has settled.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from hitl_gate.core.domain import DomainConfig
from hitl_gate.ingest.names import convention_refusal, file_format, shown

DEFAULT_FORMATS = ("csv", "parquet", "jsonl")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LandingFile:
    """One file in the landing zone, fingerprinted when discovered."""

    path: Path
    sha256: str
    size_bytes: int
    partition_date: date
    arrived_at: datetime  # file mtime, UTC


@dataclass(frozen=True)
class RefusedFile:
    """An entry of a day folder that is not ingested, and why (see the module docstring)."""

    path: Path
    partition_date: date
    reason: str
    message: str
    size_bytes: int | None = None
    arrived_at: datetime | None = None


@dataclass(frozen=True)
class LandingRules:
    """What a domain takes from its landing folder: formats, completion marker, settle time."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    marker: str | None = None
    settle_seconds: float = 0.0


@dataclass(frozen=True)
class DayListing:
    """A day folder as listed: how many entries, which were taken, which refused."""

    day: date
    seen: int
    files: list[LandingFile] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)


def landing_rules(domain: DomainConfig, settle_seconds: float) -> LandingRules:
    """What `domain` takes from its landing folder, with the deployment's settle interval."""
    return LandingRules(
        formats=tuple(domain.contract.formats),
        marker=domain.landing_marker,
        settle_seconds=settle_seconds,
    )


def arrival_time(mtime: float) -> datetime:
    """When a file arrived, as the registry records it: its mtime, in UTC."""
    return datetime.fromtimestamp(mtime, tz=UTC)


def sha256_of(path: Path) -> str:
    """Streamed SHA-256 so large files never sit in memory just to be fingerprinted."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: Path, day: date) -> LandingFile:
    """A file as the landing zone sees it: content hash, size, and arrival (mtime, UTC)."""
    stat = path.stat()
    return LandingFile(
        path=path,
        sha256=sha256_of(path),
        size_bytes=stat.st_size,
        partition_date=day,
        arrived_at=arrival_time(stat.st_mtime),
    )


def _refusal(entry: os.DirEntry[str], rules: LandingRules) -> tuple[str, str] | None:
    """Why an entry is not a data file to read (before completeness), if it is not."""
    name = entry.name
    if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
        return "not_a_file", "not a regular file (a folder, link or device): only files are read"
    if rules.marker is not None and name == rules.marker:
        return "marker", f"the folder's completion marker ({rules.marker}), it holds no cases"
    by_name = convention_refusal(name)
    if by_name is not None:
        return by_name
    fmt = file_format(name)
    if fmt is None:
        return "unsupported_type", "unsupported file type: not one of " + ", ".join(
            f".{f}" for f in rules.formats
        )
    if fmt not in rules.formats:
        return "unsupported_type", f"format {fmt} is not allowed by the domain's contract"
    return None


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file, or None when it is gone."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _incomplete_by_marker(candidates: list[Path], folder: Path, marker: str) -> dict[Path, str]:
    """Files the marker convention does not vouch for: no marker yet, or changed after it."""
    stamp = _stamp(folder / marker)
    if stamp is None:
        words = f"incomplete: no completion marker {marker} in the folder yet"
        return dict.fromkeys(candidates, words)
    late = {}
    for path in candidates:
        own = _stamp(path)
        if own is not None and own[1] > stamp[1]:
            late[path] = f"incomplete: modified after the completion marker {marker}"
    return late


def _unsettled(
    candidates: list[Path],
    settle_seconds: float,
    *,
    wait: bool,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[Path, str]:
    """Files whose size or mtime is not yet stable over the settle interval.

    With `wait`, files younger than the interval are looked at again once it has passed (one
    sleep of at most the interval for the whole folder); without, they are simply not yet
    complete (the landing sensor asks again on its next tick).
    """
    if settle_seconds <= 0 or not candidates:
        return {}
    first = {p: _stamp(p) for p in candidates}
    now = clock()
    young = [p for p, s in first.items() if s is not None and now - s[1] / 1e9 < settle_seconds]
    if not young:
        return {}
    words = f"incomplete: still changing within the settle interval of {settle_seconds:g} s"
    if not wait:
        return dict.fromkeys(young, words)
    oldest_needed = max(settle_seconds - (now - first[p][1] / 1e9) for p in young)  # type: ignore[index]
    sleep(min(settle_seconds, max(0.0, oldest_needed)))
    return {p: words for p in young if _stamp(p) != first[p]}


def survey_day_folder(
    folder: Path, day: date, rules: LandingRules, *, wait: bool = True
) -> tuple[int, list[Path], list[RefusedFile]]:
    """Entries seen, the complete data files among them (by name), and the refused ones.

    Nothing is hashed here, so the landing sensor can skip files it already knows by stat.
    """
    if not folder.is_dir():
        return 0, [], []
    with os.scandir(folder) as entries:
        listed = sorted(entries, key=lambda e: e.name)
    refused: list[RefusedFile] = []
    candidates: list[Path] = []
    for entry in listed:
        why = _refusal(entry, rules)
        if why is None:
            candidates.append(Path(entry.path))
        else:
            refused.append(_refused(Path(entry.path), day, *why))
    if rules.marker is not None:
        incomplete = _incomplete_by_marker(candidates, folder, rules.marker)
    else:
        incomplete = _unsettled(candidates, rules.settle_seconds, wait=wait)
    refused += [_refused(p, day, "incomplete", words) for p, words in incomplete.items()]
    complete = [p for p in candidates if p not in incomplete]
    return len(listed), complete, sorted(refused, key=lambda r: r.path.name)


def list_day_folder(
    folder: Path, day: date, rules: LandingRules, *, wait: bool = True
) -> DayListing:
    """Every entry of one day folder, taken (fingerprinted) or refused with its reason.

    Entries are taken in name order. A missing folder is an empty listing.
    """
    seen, complete, refused = survey_day_folder(folder, day, rules, wait=wait)
    files = []
    for path in complete:
        try:
            files.append(fingerprint(path, day))
        except FileNotFoundError:
            refused.append(_refused(path, day, "vanished", "removed while it was being listed"))
    return DayListing(day, seen, files, sorted(refused, key=lambda r: r.path.name))


def _refused(path: Path, day: date, reason: str, words: str) -> RefusedFile:
    try:
        stat = path.lstat()
    except FileNotFoundError:
        size, arrived = None, None
    else:
        size, arrived = stat.st_size, arrival_time(stat.st_mtime)
    return RefusedFile(
        path=path,
        partition_date=day,
        reason=reason,
        message=f"{shown(path)}: refused ({reason}): {words}",
        size_bytes=size,
        arrived_at=arrived,
    )
