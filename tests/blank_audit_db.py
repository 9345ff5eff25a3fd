"""A schema-only audit database where a test's world is about to create its own.

`core.database.create_audit_database` makes a new audit database as a copy of a schema-only
one made once per process (and `audit_connection` does so for every writer creating its
file), so a world that starts from a copy is the world that starts from nothing, one schema
run cheaper. The copy is only placed where none exists and a writer is about to open it (and
so create it), never where a test checks what happens without one.
"""

from __future__ import annotations

from pathlib import Path

from hitl_gate.core.database import create_audit_database


def blank_if_missing(path: Path) -> Path:
    """`path`, holding a schema-only audit database if it held none (for a writer about to
    open it: what that writer would have created); an existing file is left as it is."""
    create_audit_database(path)
    return path
