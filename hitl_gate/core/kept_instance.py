"""Short audit connections without a new DuckDB instance each: the file is attached to an
in-memory instance this process keeps, and detached when its last connection closes.

Opening a DuckDB file builds a whole database instance, and most of that is DuckDB's catalogue
of built-in functions, the same for every file: about 22 ms of CPU per open and per close,
whatever the file holds (a demo home's audit file: 40 ms per open and close, against 10 ms to
`ATTACH` and `DETACH` it on a kept instance). Pipeline steps open the audit file dozens of times
per run, always briefly, because processes take turns on it (`database.audit_connection`).

What stays as before: `DETACH` checkpoints the file and releases DuckDB's file lock at once
(another process opens it the next moment), and `ATTACH` replays a write-ahead log left by a
crash, as an open does. Each kept instance has its file access restricted before anything is
attached (`restrict`: the caller's folders and files, plus the attached file's own), so every
connection handed out is restricted as before; instances are kept per file and restriction.
While a file is attached, every connection to it in this process shares that instance (DuckDB
refuses a second instance on one file), as DuckDB's own instance cache did: the restriction
stays as the first one set it, and a connection of the other mode (read-only or not) is
refused. A process forks with no idle instance (they are closed before), since a forked child
cannot use or close its parent's DuckDB threads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from hitl_gate.core.quiet_duckdb import quiet_connect

# Idle instances kept per process (least recently used closed first), about 7 MB each (DuckDB's
# function catalogue). A pipeline step that seals uses up to four in turn (the audit file, the
# audit file allowed to attach the run's segment, the segment itself, the replica's views file
# that the seal's refresh writes), plus one spare: with fewer kept, they evict each other and
# every connection builds an instance again.
MAX_IDLE_INSTANCES = 5


@dataclass
class _Instance:
    """A kept in-memory instance and what is attached to it now."""

    con: duckdb.DuckDBPyConnection
    path: Path
    alias: str
    users: int = 0
    read_only: bool = False


_LOCK = threading.Lock()
# By (file, restriction key): the instances this process keeps, least recently used first.
_INSTANCES: OrderedDict[tuple[Path, object], _Instance] = OrderedDict()
# By file: the instance it is attached to now.
_ATTACHED: dict[Path, _Instance] = {}
_STATS = {"instances": 0, "attaches": 0}


def stats() -> dict[str, int]:
    """How many instances this process built and how many times it attached a file (tests)."""
    return dict(_STATS)


def attached_under(folder: Path) -> list[Path]:
    """The files under `folder` attached to an instance of this process now (a connection to
    them still open): what must be closed before the folder's files are replaced (tests)."""
    root = Path(folder).resolve()
    with _LOCK:
        return [path for path in _ATTACHED if path.is_relative_to(root)]


@contextmanager
def attached_connection(
    path: Path,
    read_only: bool,
    restriction: object,
    restrict: Callable[[duckdb.DuckDBPyConnection], None],
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection whose default database is the file `path`, on a kept instance.

    `restriction` keys the instance (equal keys: the same allowances); `restrict` restricts a
    new instance's file access, and must allow `path`'s own files. DuckDB's errors (a lock
    held by another process, a corrupt file) come out of the `ATTACH` as they came out of
    `connect`, and leave no instance attached.
    """
    path = Path(path).resolve()
    instance = _take(path, read_only, restriction, restrict)
    try:
        con = instance.con.cursor()
        try:
            if not _quiet_cursors(instance.con):  # the `SET` only where it changes something
                con.execute("SET enable_progress_bar = false")
            yield con
        finally:
            con.close()
    finally:
        _give_back(instance)


def _take(
    path: Path,
    read_only: bool,
    restriction: object,
    restrict: Callable[[duckdb.DuckDBPyConnection], None],
) -> _Instance:
    with _LOCK:
        current = _ATTACHED.get(path)
        if current is not None:
            if current.read_only != read_only:
                mode = "read-only" if current.read_only else "for writing"
                raise duckdb.ConnectionException(
                    f"{path} is open {mode} in this process: close it before opening it the "
                    "other way"
                )
            current.users += 1
            return current
        key = (path, restriction)
        instance = _INSTANCES.pop(key, None)
        if instance is None:
            instance = _new_instance(path, restrict)
        _INSTANCES[key] = instance  # most recently used last
        try:
            _attach(instance, read_only)
        except BaseException:
            _close_idle()
            raise
        _STATS["attaches"] += 1
        instance.users, instance.read_only = 1, read_only
        _ATTACHED[path] = instance
        _close_idle()
        return instance


def _give_back(instance: _Instance) -> None:
    with _LOCK:
        instance.users -= 1
        if instance.users:
            return
        del _ATTACHED[instance.path]
        _detach(instance)
        _close_idle()


def _attach(instance: _Instance, read_only: bool) -> None:
    """Attach the file as the instance's only database, so it is every new connection's
    default (what `con.cursor()` reads) and the catalogue lists only it, as after an open."""
    con = instance.con
    mode = " (READ_ONLY)" if read_only else ""
    con.execute(f"ATTACH ? AS {instance.alias}{mode}", [str(instance.path)])
    try:
        # One call, two statements (DuckDB runs them in turn, stopping at an error): each
        # call of the driver costs about 0.1 ms of CPU beyond its statement.
        con.execute(f"USE {instance.alias}; DETACH {PLACEHOLDER}")
    except BaseException:
        _detach(instance)
        raise


def _detach(instance: _Instance) -> None:
    """Detach the file and every database its connections attached (DuckDB checkpoints each
    and releases its lock, as closing an instance did), leaving the empty in-memory
    placeholder as the instance's only database."""
    con = instance.con
    # One call for the three statements, the list filtered here: a bound parameter and a
    # filter cost DuckDB more than the handful of rows they would spare (0.5 ms of CPU a close).
    attached = con.execute(
        f"ATTACH IF NOT EXISTS ':memory:' AS {PLACEHOLDER}; USE {PLACEHOLDER}; "
        "SELECT database_name, internal FROM duckdb_databases()"
    ).fetchall()
    for name, internal in attached:
        if not internal and name != PLACEHOLDER:
            con.execute("DETACH " + '"' + str(name).replace('"', '""') + '"')


def _new_instance(path: Path, restrict: Callable[[duckdb.DuckDBPyConnection], None]) -> _Instance:
    # Spills where a connection to the file spills (`<file>.tmp`), not in the working folder.
    con = quiet_connect(config={"temp_directory": f"{path}.tmp"})
    try:
        restrict(con)
    except BaseException:
        con.close()
        raise
    _STATS["instances"] += 1
    return _Instance(con, path, _alias(path))


def _quiet_cursors(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether DuckDB's driver starts the connections `cursor` adds with the progress bar
    off: it turns the bar on for the connection `connect` returns (depending on where stdout
    goes), not for those. Read on the first connection this process hands out (a query on a new
    cursor costs more than the `SET` it spares, so not per instance): 0.25 ms of CPU a
    connection."""
    if not _QUIET_CURSORS:
        cursor = con.cursor()
        try:
            setting = "SELECT current_setting('enable_progress_bar')"
            _QUIET_CURSORS.append(not cursor.execute(setting).fetchall()[0][0])
        finally:
            cursor.close()
    return _QUIET_CURSORS[0]


# `_quiet_cursors`' answer, once read (the driver's behaviour: the same for every instance).
_QUIET_CURSORS: list[bool] = []


# The in-memory database a kept instance holds while no file is attached (DuckDB's own name
# for it): an instance always has one database.
PLACEHOLDER = "memory"


def _name(path: Path) -> str:
    """The catalogue name DuckDB gives a file it opens: its name up to the first dot."""
    return path.name.split(".")[0]


def can_attach(path: Path) -> bool:
    """Whether `path` can be attached to a kept instance as an open would name it: not a
    symbolic link (the allowance refuses those), and not named as the placeholder."""
    return not Path(path).is_symlink() and _name(Path(path)) not in ("", PLACEHOLDER)


def _alias(path: Path) -> str:
    return '"' + _name(path).replace('"', '""') + '"'


def _close_idle(keep: int = MAX_IDLE_INSTANCES) -> None:
    """Close the least recently used instances with nothing attached beyond `keep` idle ones."""
    idle = [key for key, instance in _INSTANCES.items() if instance.users == 0]
    for key in idle[: max(0, len(idle) - keep)]:
        _INSTANCES.pop(key).con.close()


def close_idle_instances() -> None:
    """Close every kept instance with nothing attached (before a fork; tests)."""
    if _LOCK.acquire(timeout=5):
        try:
            _close_idle(keep=0)
        finally:
            _LOCK.release()


# Inherited instances a forked child must neither use nor close (their threads stayed behind).
_ABANDONED: list[_Instance] = []


def _forget_in_child() -> None:
    global _LOCK
    _ABANDONED.extend(_INSTANCES.values())
    _INSTANCES.clear()
    _ATTACHED.clear()
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=close_idle_instances, after_in_child=_forget_in_child)
