"""Child processes forked from one server that imported the stages' libraries once.

Tests that need a process of their own with Feast, MLflow and the code location loaded (a
second opener of a store while the test holds its lock; a step forked as the multiprocess
executor forks it; a command line) each started a fresh interpreter that imported those
libraries again: 3 to 12 s of CPU a test. The server here is a fresh interpreter that imports
what `hitl demo`'s domain processes are forked after (`domain_preload()`: `STEP_PRELOAD`, what
the multiprocess executor's forkserver imports, then the demo's own) and nothing else, then
forks each child from itself, as Python's forkserver does: a child starts from a process that
only imported (no database, store or lock opened, no thread started), as a spawned one would,
with the modules loaded. One server per test
process, its tests on one xdist worker (`FORK_SERVER_GROUP`); children run one at a time.

Run as a script by `ForkServer`; it reads one JSON request a line (the child's target as
`module:function`, its string arguments, the file for its output) and answers with the child's
pid, then its exit code once it ended (negative: the signal).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import IO

FORK_SERVER_GROUP = "fork_server"  # xdist_group of the tests using it: one server per run


class ForkedChild:
    """A child of the server; `join` reads its exit code when the server has reaped it."""

    def __init__(self, pid: int, answers: IO[str]) -> None:
        self.pid = pid
        self._answers = answers
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        return self.join(0) is None

    def join(self, timeout: float) -> int | None:
        """The exit code (negative: killed by that signal), or None if still running."""
        if self.exitcode is None:
            ready, _, _ = select.select([self._answers], [], [], timeout)
            if ready:
                self.exitcode = int(self._answers.readline())
        return self.exitcode

    def kill(self) -> None:
        if self.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)
            self.join(30)


class ForkServer:
    """The server process (module docstring), started with the test process's `sys.path` and
    the environment `env` (its children's: the server imports the code location with it)."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str]) -> None:
        self.preload = tuple(preload)
        self._process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self._send({"path": sys.path, "preload": list(preload)})
        assert self._answers.readline().strip() == "ready", "the fork server did not start"
        self._child: ForkedChild | None = None

    @property
    def _answers(self) -> IO[str]:
        assert self._process.stdout is not None
        return self._process.stdout

    def _send(self, request: dict[str, object]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()

    def start(self, target: Callable[..., object], *args: str, output: Path) -> ForkedChild:
        """Fork a child running `target(*args)` (a module-level function), its stdout and
        stderr going to `output`; the previous child must have ended."""
        assert self._child is None or self._child.exitcode is not None, "one child at a time"
        self._send(
            {"target": f"{target.__module__}:{target.__qualname__}", "args": list(args)}
            | {"output": str(output)}
        )
        self._child = ForkedChild(int(self._answers.readline()), self._answers)
        return self._child

    def close(self) -> None:
        if self._child is not None:
            self._child.kill()
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(30)


def _run_child(target: str, args: list[str], output: str) -> None:
    """In the forked child: run the target with its output in the file, then exit."""
    code = 1
    try:
        with open(output, "w", encoding="utf-8") as out, open(os.devnull) as devnull:
            os.dup2(devnull.fileno(), 0)  # not the server's request pipe
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
        module, name = target.split(":")
        getattr(import_module(module), name)(*args)
        code = 0
    except SystemExit as exc:  # a command line's own exit code
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # noqa: BLE001 - any failure is the child's exit code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _answer(value: object) -> None:
    sys.stdout.write(f"{value}\n")
    sys.stdout.flush()


def main() -> None:
    setup = json.loads(sys.stdin.readline())
    sys.path[:] = setup["path"]
    for module in setup["preload"]:
        import_module(module)
    _answer("ready")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(request["target"], request["args"], request["output"])
        _answer(pid)
        _, status = os.waitpid(pid, 0)
        _answer(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
