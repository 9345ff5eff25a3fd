"""A schema-only audit database, made once per test process and copied where a test's world is
about to create its own.

A new audit database costs about 0.07 s of CPU beyond opening it: its first writer runs the
whole schema (`core.database.ensure_schema` parses and binds every table and view). A byte copy
of a database on which the schema just ran is that same database, and its first writer finds
the catalogue complete and skips the schema, so a world that starts from a copy is the world
that starts from nothing, one schema run cheaper. The copy is only placed where none exists and
a writer is about to open it (and so create it), never where a test checks what happens without
one; the template is remade when the schema files change.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from hitl_gate.core.database import audit_connection, schema_statements

_TEMPLATES: dict[str, Path] = {}  # by the schema's text: one kept per process


def blank_if_missing(path: Path) -> Path:
    """`path`, holding a schema-only audit database if it held none (for a writer about to
    open it: what that writer would have created); an existing file is left as it is."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template(), path)
    return path


def _template() -> Path:
    statements = schema_statements()
    template = _TEMPLATES.get(statements)
    if template is None:
        folder = Path(tempfile.mkdtemp(prefix="hitl-gate-blank-audit-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "audit.duckdb"
        with audit_connection(template):
            pass  # the writer runs the schema and checkpoints it into the file on close
        _TEMPLATES.clear()
        _TEMPLATES[statements] = template
    return template
