"""Run a command and print the CPU seconds of it and of every process it started, orphans too.

`/usr/bin/time` counts only the children a process waits for: the recovery test's forkserver
(and its killed runs) or a webserver's code server are never waited for by pytest, so their CPU
went uncounted. This process makes itself a child subreaper (Linux `prctl`), so every orphaned
descendant is re-parented to it, and it waits for all of them before it reads its children's
usage. Usage: `python bench/cpu_all.py <command...>` (the figures go to stderr).
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def main(command: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    started = time.monotonic()
    code = subprocess.call(command)
    wall = time.monotonic() - started
    while True:  # the orphans re-parented here, until the last one ends
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"CPU {usage.ru_utime + usage.ru_stime:.1f} s (user {usage.ru_utime:.1f} sys "
        f"{usage.ru_stime:.1f}) wall {wall:.1f} s exit {code} load {load}",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
