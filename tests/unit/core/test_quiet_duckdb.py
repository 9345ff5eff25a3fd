"""No DuckDB connection the library opens draws DuckDB's progress bar on stdout.

DuckDB draws it for any query over two seconds, terminal or not: it landed between the demo's
printed counts on a loaded machine, and a segment-scanning child writes its result as JSON on
stdout. Only the interactive SQL prompt (`hitl audit sql`) keeps it, for a person waiting.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from hitl_gate.core.domain import PROJECT_ROOT
from hitl_gate.core.quiet_duckdb import quiet_connect

LIBRARY = ("hitl_gate", "features", "models", "policies", "pipelines", "assets")
# The one place allowed to call `duckdb.connect` itself, besides `quiet_connect`: a person's
# interactive prompt, where the bar tells them a long query is still running.
INTERACTIVE = {Path("hitl_gate/app/cli/sql_prompt.py"), Path("hitl_gate/core/quiet_duckdb.py")}
CONNECT = re.compile(r"\bduckdb\.connect\(")


# DuckDB's default depends on where stdout goes: on when it is a pipe or a terminal (a `hitl`
# run, the demo), off under pytest's capture. So the connections are probed in a child whose
# stdout is a pipe, where a plain connection does draw the bar.
PROBE = """
import sys
from pathlib import Path
import duckdb
from hitl_gate.core.database import audit_connection
from hitl_gate.core.quiet_duckdb import quiet_connect

def bar(con):
    return con.execute("SELECT current_setting('enable_progress_bar')").fetchall()[0][0]

audit_db = Path(sys.argv[1]) / "audit.duckdb"
with duckdb.connect() as plain, quiet_connect() as quiet:
    seen = [bar(plain), bar(quiet)]
for read_only in (False, True):
    with audit_connection(audit_db, read_only=read_only) as con:
        seen.append(bar(con))
print(seen)
"""


@pytest.mark.slow  # a child process (imports DuckDB and the database layer, ~1 s)
def test_library_connections_draw_no_bar_where_duckdb_would(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120, check=True,
    )  # fmt: skip
    plain, quiet, audit_writer, audit_reader = ast.literal_eval(child.stdout.strip())
    assert plain, "a plain connection draws no bar here: the probe proves nothing"
    assert not quiet and not audit_writer and not audit_reader


def test_quiet_connections_keep_their_options(tmp_path: Path) -> None:
    path = tmp_path / "a.duckdb"
    with quiet_connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with quiet_connect(str(path), read_only=True, config={"enable_external_access": False}) as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
        with pytest.raises(duckdb.Error):  # read-only, as asked
            con.execute("CREATE TABLE u (x INTEGER)")
        with pytest.raises(duckdb.Error):  # no file access, as asked
            con.execute(f"SELECT * FROM read_csv('{tmp_path}/missing.csv')").fetchall()


def test_the_library_opens_duckdb_only_through_quiet_connect() -> None:
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for package in LIBRARY
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        if path.relative_to(PROJECT_ROOT) not in INTERACTIVE
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if CONNECT.search(line) and not line.lstrip().startswith(("#", '"', "`"))
    ]
    assert not found, f"use hitl_gate.core.quiet_duckdb.quiet_connect: {found}"
