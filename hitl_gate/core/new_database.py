"""Write a new database file from bytes, only where no database of that name exists.

Stores that a library creates by running its migrations on an empty file (a Dagster run's event
database, MLflow's tracking store) pay that once per new file; a copy of a file the library
just initialised is that file. The copy is written aside and hard-linked into place: the link
is atomic and fails where the name exists, so a database another process created meanwhile is
never replaced, and no reader ever opens a half-written one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

# The files beside a database that mean it was in use (a leftover of any: it is not new).
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
DUCKDB_SIDE_FILES = (".wal",)


def place_new_database(
    path: Path, content: bytes, side_files: tuple[str, ...] = SQLITE_SIDE_FILES
) -> bool:
    """Write `content` as `path`; True when this call created it. False, with nothing written,
    where the database or any of its `side_files` exists, or the file system cannot link (the
    library then opens or creates the file itself, as without this)."""
    path = Path(path)
    if any(os.path.lexists(f"{path}{suffix}") for suffix in ("", *side_files)):
        return False
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")  # not `*.db`: never listed
    try:
        with open(staged, "xb") as out:
            out.write(content)
        os.link(staged, path)
    except OSError:  # created meanwhile (FileExistsError), no hard links, no room
        return False
    finally:
        staged.unlink(missing_ok=True)
    return True
