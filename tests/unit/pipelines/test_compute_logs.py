"""A run's captured stdout/stderr are the files Dagster's own manager writes, mirrored to the
terminal by Dagster's `tail`, its orphan watcher started without `site` and still doing its job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance

from hitl_gate.app.runner import DAGSTER_YAML, ensure_dagster_home
from pipelines.compute_logs import WATCHER_FLAGS, HitlLocalComputeLogManager

posix = pytest.mark.skipif(os.name == "nt", reason="Dagster's own mirroring on Windows")

# A child capturing a few lines with one manager: its stdout is what reached the "terminal";
# it prints the processes it started, then the captured files' names and contents.
CAPTURE = """
import json, os, subprocess, sys, time
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from pipelines.compute_logs import HitlLocalComputeLogManager
started = []
spawn = subprocess.Popen.__init__
def spied(self, args, *a, **k):
    started.append([os.path.basename(str(a)) for a in args[:-2]])
    return spawn(self, args, *a, **k)
subprocess.Popen.__init__ = spied
def parent_of(pid):
    try:
        return open(f"/proc/{pid}/stat").read().split()[3]
    except OSError:  # the process ended between the listing of /proc and this read
        return None
kind, base, die = sys.argv[1], sys.argv[2], sys.argv[3] == "die"
manager = {"ours": HitlLocalComputeLogManager, "dagster": LocalComputeLogManager}[kind](base)
with manager.capture_logs(["run", "compute_logs", "key"]):
    print("out line", flush=True)
    os.write(2, b"err line\\n")
    if die:
        tails = [p for p in os.listdir("/proc")
                 if p.isdigit() and parent_of(p) == str(os.getpid())]
        open(os.path.join(base, "children"), "w").write(" ".join(tails))
        os.kill(os.getpid(), 9)
    time.sleep(1.5)
files = sorted(os.path.relpath(os.path.join(d, f), base)
               for d, _, fs in os.walk(base) for f in fs)
print("RESULT " + json.dumps([started, {f: open(os.path.join(base, f)).read() for f in files}]))
"""


def _capture(kind: str, base: Path, die: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CAPTURE, kind, str(base), "die" if die else "live"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[3],
        timeout=120,
    )


def _result(done: subprocess.CompletedProcess[str]) -> tuple[list, dict]:
    import json

    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    started, files = json.loads(line[len("RESULT ") :])
    return started, files


def test_a_new_home_captures_where_dagsters_default_does(tmp_path: Path) -> None:
    ours, dagsters = tmp_path / "ours", tmp_path / "dagsters"
    ensure_dagster_home(ours)
    dagsters.mkdir()
    (dagsters / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    folders = {}
    for home in (ours, dagsters):
        with DagsterInstance.from_config(str(home)) as instance:
            manager = instance.compute_log_manager
            path = manager.get_captured_local_path(["r", "compute_logs", "k"], "out")
            folders[home.name] = (type(manager), os.path.relpath(path, home))
    assert folders["ours"][0] is HitlLocalComputeLogManager
    assert folders["ours"][1] == folders["dagsters"][1]


@pytest.mark.slow  # starts Python processes, each capturing with a real `tail`
@posix
def test_the_capture_writes_dagsters_files_and_mirrors_them_as_dagster_does(
    tmp_path: Path,
) -> None:
    results = {}
    for kind in ("ours", "dagster"):
        done = _capture(kind, tmp_path / kind)
        assert done.returncode == 0, done.stderr
        results[kind] = _result(done)
        assert "out line" in done.stdout and "err line" in done.stdout  # mirrored
    (our_started, our_files), (their_started, their_files) = results["ours"], results["dagster"]
    assert our_files == their_files
    assert our_files["run/compute_logs/key.out"] == "out line\n"
    assert our_files["run/compute_logs/key.err"] == "err line\n"
    assert "run/compute_logs/key.complete" in our_files
    python = os.path.basename(sys.executable)
    tail = ["tail", "-F", "-c"]  # and "+0", the file
    assert their_started == [tail, [python, "watch_orphans.py"]] * 2
    assert our_started == [tail, [python, *WATCHER_FLAGS, "watch_orphans.py"]] * 2


@pytest.mark.slow  # starts a Python process and kills it
@posix
def test_the_tails_stop_once_the_runs_process_is_killed(tmp_path: Path) -> None:
    done = _capture("ours", tmp_path, die=True)
    assert done.returncode == -signal.SIGKILL
    pids = [int(p) for p in (tmp_path / "children").read_text().split()]
    assert len(pids) == 4  # two tails, two watchers
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    alive = [p for p in pids if Path(f"/proc/{p}/cmdline").exists()
             and b"tail" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0]]  # fmt: skip
    assert not alive  # the watchers stopped them
