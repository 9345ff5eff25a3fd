"""The fixed cost of one day's run on a built home: what most end-to-end tests pay per run.

`python -m bench.day_rerun --home H --pristine P [--repeats 3] [--profile DIR]`

Builds nothing: `H` is a home built once by `hitl demo` (every shipped domain) into a folder of
its own (`W/home`; the witness sits beside it, `W/home-witness`), and `P` a copy of `W` taken
right after the build (`cp -a W P`). A built home stores absolute paths of itself, so each
measurement restores `P` onto the very folder `W` (as tests/e2e/home_templates.py does).

Each repeat restores the home, then runs a child process that imports the heavy libraries
(timed apart: a test process pays them once), then measures two runs of `DAY` through the CLI
in that process, as the end-to-end tests do (`hitl --home H run --partition DAY`):

- `rerun`: the day again, nothing new (every stage re-reads, re-checks and re-seals nothing);
- `new_file`: the day with one new landing file (a copy of an automatically decided case of the
  day under a new id), so every stage has one new case to carry to the seal.

Per run: CPU seconds (user + system of the process and of the children it waited for, e.g.
`ssh-keygen`), wall, and CPU per Dagster step (read at the step's start and end events in this
process: the executor runs steps in process), plus `outside` (the run's CPU that no step had:
building the definitions, creating the run, planning, the CLI's own reads). With `--profile`,
each run is also profiled with pyinstrument (`DIR/<label>-<run>.txt` and `.html`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.child_result import run_measuring_child

DAY = "2018-01-05"
DOMAIN_LANDING = "applications"  # consumer_credit's landing_subdir (domains/consumer_credit)
NEW_CASE = "LC18Q1-BENCH1"
RESULT_MARK = "DAY-RERUN-RESULT "
RUNS = ("rerun", "new_file")
# What a day's run imports lazily (tests/fork_server.py `preload()` lists the same): imported
# before the clock starts, as a test process has them after its first run.
WARM = (
    "feast",
    "ibis",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "skops.io",
    "sklearn.linear_model",
    "pandera.polars",
    "openpyxl",
    "great_expectations",
    "plotly.graph_objects",
    "pipelines.definitions",
    "hitl_gate.app.cli",
)


def cpu_now() -> float:
    """User + system CPU seconds of this process and of its waited-for children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def restore(home: Path, pristine: Path) -> None:
    """The folder holding `home` (and its witness) becomes an exact copy of `pristine` again."""
    work = home.parent
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pristine, work, symlinks=True)


def add_landing_file(
    home: Path,
    case_id: str = NEW_CASE,
    file_name: str = "bench_new.csv",
    *,
    landing_subdir: str = DOMAIN_LANDING,
    day: str = DAY,
) -> None:
    """One new file in the day's landing folder (`landing_subdir/day`, consumer_credit's
    `DAY` unless said): an automatically decided case of the day, copied under a new id
    (`case_id`; ids are the files' first column). Also the recovery test's new case."""
    from hitl_gate.core.database import audit_connection, query_frame
    from hitl_gate.core.home import HitlPaths

    paths = HitlPaths.at(home)
    folder = paths.landing / landing_subdir / day
    source = next(p for p in sorted(folder.glob("*.csv")) if p.name != file_name)
    lines = source.read_text(encoding="utf-8").splitlines()
    with audit_connection(paths.audit_db, read_only=True) as con:
        automatic = set(
            query_frame(con, "SELECT case_id FROM decisions WHERE route <> 'human_review'")[
                "case_id"
            ]
        )
    row = next(r.split(",") for r in lines[1:] if r.split(",")[0] in automatic)
    row[0] = case_id
    (folder / file_name).write_text(f"{lines[0]}\n{','.join(row)}\n", encoding="utf-8")


class StepClock:
    """CPU per Dagster step, read at the step's start and end events (in-process executor)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def install(self) -> None:
        from dagster import DagsterInstance

        handle = DagsterInstance.handle_new_event
        clock = self

        def timed(instance, event, **kwargs):  # type: ignore[no-untyped-def]
            step = event.dagster_event
            if step is not None and step.step_key:
                kind = step.event_type_value
                if kind == "STEP_START":
                    clock.started[step.step_key] = cpu_now()
                elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step.step_key in clock.started:
                    spent = cpu_now() - clock.started.pop(step.step_key)
                    clock.cpu[step.step_key] = clock.cpu.get(step.step_key, 0.0) + spent
            return handle(instance, event, **kwargs)

        DagsterInstance.handle_new_event = timed  # type: ignore[method-assign]

    def take(self) -> dict[str, float]:
        taken, self.cpu = self.cpu, {}
        return taken


def child(home: Path, profile_dir: Path | None, label: str) -> dict:
    """In this process: warm imports, then the two measured runs of the day."""
    started = cpu_now()
    for module in WARM:
        __import__(module)
    from hitl_gate.app.cli import main

    figures: dict = {"imports_cpu_s": round(cpu_now() - started, 3), "runs": {}}
    clock = StepClock()
    clock.install()
    for run in RUNS:
        if run == "new_file":
            add_landing_file(home)
        profiler = None
        if profile_dir is not None:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002)
            profiler.start()
        cpu0, wall0 = cpu_now(), time.monotonic()
        main(["--home", str(home), "run", "--partition", DAY])
        cpu, wall = cpu_now() - cpu0, time.monotonic() - wall0
        if profiler is not None and profile_dir is not None:
            profiler.stop()
            profile_dir.mkdir(parents=True, exist_ok=True)
            stem = profile_dir / f"{label}-{run}"
            stem.with_suffix(".txt").write_text(profiler.output_text(show_all=False))
            stem.with_suffix(".html").write_text(profiler.output_html())
        steps = {k.rsplit("__", 1)[-1]: round(v, 3) for k, v in clock.take().items()}
        figures["runs"][run] = {
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "outside_steps_cpu_s": round(cpu - sum(steps.values()), 3),
            "steps_cpu_s": steps,
        }
    return figures


def measure(home: Path, pristine: Path, profile_dir: Path | None, label: str) -> dict:
    """Restore the home, then one child process (its own interpreter) measures the runs."""
    restore(home, pristine)
    command = [sys.executable, "-m", "bench.day_rerun", "--child", "--home", str(home)]
    command += ["--label", label]
    if profile_dir is not None:
        command += ["--profile", str(profile_dir)]
    return run_measuring_child(command, RESULT_MARK, "the measuring child")


def summary(results: list[dict]) -> dict:
    """Medians over the repeats: each run's CPU, wall, outside-steps CPU and CPU per step."""
    out: dict = {"imports_cpu_s": statistics.median(r["imports_cpu_s"] for r in results)}
    for run in RUNS:
        per = [r["runs"][run] for r in results]
        steps = sorted({s for p in per for s in p["steps_cpu_s"]})
        out[run] = {
            key: round(statistics.median(p[key] for p in per), 3)
            for key in ("cpu_s", "wall_s", "outside_steps_cpu_s")
        }
        out[run]["steps_cpu_s"] = {
            s: round(statistics.median(p["steps_cpu_s"].get(s, 0.0) for p in per), 3) for s in steps
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a home built by `hitl demo`")
    parser.add_argument("--pristine", type=Path, help="copy of its folder after the build")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="folder for pyinstrument profiles")
    parser.add_argument("--label", default="run", help="names the profiles and the result")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    home = args.home.resolve()
    if args.child:
        os.environ.pop("HITL_HOME", None)
        print(RESULT_MARK + json.dumps(child(home, args.profile, args.label)), flush=True)
        return
    if args.pristine is None:
        raise SystemExit("--pristine: the copy of the built home to restore before each run")
    results = [
        measure(home, args.pristine.resolve(), args.profile, f"{args.label}{n}")
        for n in range(args.repeats)
    ]
    print(json.dumps({"label": args.label, "repeats": results, "median": summary(results)}))


if __name__ == "__main__":
    main()
