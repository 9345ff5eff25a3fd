"""Another process holding the audit file (a run, an auditor's writable session): the portal
answers 503 naming the holder's PID, never a 500 with DuckDB's paragraph, and works again as
soon as the file is free."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.portal_fixtures import PASSWORD, WorldTemplates, csrf_of

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2

HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
con.close()
"""


@contextmanager
def held(path: Path) -> Iterator[int]:
    """The audit file held for writing by another process until the block ends; its PID."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_held_audit_file_gives_503_naming_the_holder_then_the_portal_works_again(
    tmp_path: Path,
    portal_worlds: WorldTemplates,
) -> None:
    world = portal_worlds.make(
        tmp_path, enrolled=("analyst-7",), assigned={"credit_analyst": "analyst-7"}
    )
    client = world.signed_in("analyst-7")
    stranger = world.client()
    form = csrf_of(stranger.get("/sign-in").text)
    with held(world.ws.db) as pid:
        busy = f"the audit database is busy (held by process {pid}); try again"
        queue = client.get("/queue")
        assert queue.status_code == 503
        assert busy in queue.text
        assert queue.headers["retry-after"] == "5" and "<h1>Busy</h1>" in queue.text
        assert "Traceback" not in queue.text and "IOException" not in queue.text
        signing_in = stranger.post(
            "/sign-in",
            data={"csrf": form, "person_id": "analyst-7", "password": PASSWORD,
                  "totp": world.code("analyst-7")},
        )  # fmt: skip
        assert signing_in.status_code == 503
        assert busy in signing_in.text
    assert client.get("/queue").status_code == 200
