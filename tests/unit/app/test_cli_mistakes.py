"""Every mistake a person makes on the command line is one line on stderr and a non-zero exit.

The corpus is what a careless operator types: dates in the wrong form, ranges backwards,
unknown domains, missing files, an empty home, a day nothing landed for, a database another
process holds. Each runs the real `hitl` (in process, and a few as real subprocesses) against
a small temporary home; none may print a traceback or a second line.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_gate.app.cli import build_parser, leaf_parsers, main, shared_parser
from hitl_gate.core.database import audit_connection

MISTAKES: dict[str, list[str]] = {
    "date day/month/year": ["run", "--partition", "15/01/2018"],
    "month 13": ["run", "--partition", "2018-13-01"],
    "30 February": ["retention", "apply", "--as-of", "2020-02-30", "--dry-run"],
    "date without zero padding": ["quarantine", "list", "--partition", "2018-1-1"],
    "range backwards": ["run", "--partition", "2018-01-05", "--to", "2018-01-01"],
    "export range backwards": [
        "audit", "export", "--from", "2018-01-31", "--to", "2018-01-01", "--out", "b",
    ],
    "export date with slashes": [
        "audit", "export", "--from", "2018/01/01", "--to", "2018-01-31", "--out", "b",
    ],
    "whatif range backwards": [
        "policy", "whatif", "policies/consumer_credit/v1.yaml",
        "--from", "2018-03-31", "--to", "2018-03-01",
    ],
    "fairness date words": ["fairness", "report", "--from", "yesterday", "--to", "2018-01-02"],
    "unknown domain before the command": ["--domain", "nope", "run", "--partition", "2018-01-05"],
    "unknown domain after the command": ["run", "--partition", "2018-01-05", "--domain", "nope"],
    "unknown domain to check": ["domain", "check", "nope"],
    "unknown domain for a trace": ["--domain", "nope", "audit", "trace", "LC18Q1-00001"],
    "no files landed that day": ["run", "--partition", "2018-01-05"],
    "no files landed that range": ["run", "--partition", "2018-01-05", "--to", "2018-01-07"],
    "day before the domain's data": ["run", "--partition", "1999-01-01"],
    "missing policy file": ["policy", "validate", "no-such-policy.yaml"],
    "missing policy file to test": ["policy", "test", "no-such-policy.yaml"],
    "missing file to check": ["ingest", "check", "no-such-file.csv"],
    "missing verdict file": ["review", "ingest", "no-such-verdicts.xlsx"],
    "missing bundle folder": ["audit", "verify-bundle", "no-such-bundle"],
    "empty home: trace": ["audit", "trace", "LC18Q1-00001"],
    "empty home: verify": ["audit", "verify"],
    "empty home: quarantine": ["quarantine", "list"],
    "unknown command": ["deploy"],
    "group without a command": ["audit"],
    "required option missing": ["run"],
    "unknown option": ["run", "--partition", "2018-01-05", "--dayz", "3"],
    "typed number": ["audit", "verify", "--workers", "two"],
}  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home, the working directory, and no deployment variables leaking in."""
    for name in ("HITL_HOME", "HITL_LANDING_DIR", "HITL_REVIEW_DIR", "HITL_DOMAINS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`main(argv)`: exit code and stderr as the terminal shows them (a `SystemExit` text too)."""
    code: int | str | None = 0
    try:
        main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # Python prints the text on stderr and exits 1
        err, code = err + code + "\n", 1
    return int(code or 0), err


def assert_one_line(code: int, err: str) -> None:
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
    assert lines[0].strip()


@pytest.mark.parametrize("argv", list(MISTAKES.values()), ids=list(MISTAKES))
def test_a_mistake_is_one_line_and_a_failure(
    argv: list[str], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_in_process(["--home", str(home), *argv], capsys)
    assert_one_line(code, err)


def test_mistakes_name_what_is_wrong(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The lines say what to fix, not only that something failed."""
    expectations = {
        "date day/month/year": "'15/01/2018' is not a day: expected YYYY-MM-DD",
        "range backwards": "--to 2018-01-01 is before --partition 2018-01-05",
        "unknown domain after the command": "known domains: consumer_credit",
        "no files landed that day": "no files landed for consumer_credit on 2018-01-05",
        "missing policy file": "no such policy file: no-such-policy.yaml",
        "empty home: trace": "nothing was recorded in this home yet",
    }
    for name, text in expectations.items():
        _, err = run_in_process(["--home", str(home), *MISTAKES[name]], capsys)
        assert text in err, (name, err)


@pytest.fixture
def held_audit_db(home: Path) -> Iterator[subprocess.Popen[str]]:
    """The home's audit database held read-only by another process (an auditor's session)."""
    with audit_connection(home / "audit.duckdb"):
        pass
    script = (
        "import duckdb, sys, time\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print('open', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(home / "audit.duckdb")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    yield holder
    holder.kill()
    holder.wait()


def test_a_locked_audit_database_names_its_holder(
    home: Path,
    held_audit_db: subprocess.Popen[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An auditor holding the live file: `hitl audit seal` says who, in one line."""
    monkeypatch.setenv("HITL_AUDIT_LOCK_WAIT_SECONDS", "0.1")
    code, err = run_in_process(["--home", str(home), "audit", "seal"], capsys)
    assert_one_line(code, err)
    assert f"PID {held_audit_db.pid}" in err and "is locked" in err


SUBPROCESS_MISTAKES = ["date day/month/year", "range backwards", "unknown domain to check"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_MISTAKES)
def test_the_installed_command_prints_one_line(name: str, home: Path) -> None:
    """The same through the real entry point: Python's own exit printing included."""
    done = subprocess.run(
        [sys.executable, "-m", "hitl_gate.app.cli", "--home", str(home), *MISTAKES[name]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line(done.returncode, done.stderr)


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` of every command and subcommand prints (argparse's `%` trap: "95% CI")."""
    parser = build_parser()
    commands = [leaf.prog.split()[1:] for leaf in leaf_parsers(parser)]
    groups = {tuple(c[:n]) for c in commands for n in range(len(c))}
    assert len(commands) > 40
    for argv in sorted(groups) + sorted(map(tuple, commands)):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args([*argv, "--help"])  # printing help leaves the parser as it was
        assert stop.value.code == 0, argv
        assert "usage: hitl" in capsys.readouterr().out, argv


def test_the_shared_parser_forgets_each_call_s_options_at_the_next() -> None:
    """`main` parses every call with one parser per process: nothing one call gives (a repeated
    option's list, a global option before or after the command) may reach the next call."""
    parser = shared_parser()
    assert parser is shared_parser()
    add = ["people", "add", "--signing-key", "k", "--name", "N", "--public-key", "p.pub"]
    first = parser.parse_args(
        ["--domain", "claims", *add, "ana", "--grant", "a:b", "--grant", "c:d", "--traceback"]
    )
    assert first.grant == ["a:b", "c:d"] and first.domain == "claims" and first.traceback
    second = parser.parse_args([*add, "bo", "--grant", "e:f"])
    assert second.grant == ["e:f"] and second.domain is None and not second.traceback
    assert vars(parser.parse_args(["run", "--partition", "2018-01-05"])) == vars(
        build_parser().parse_args(["run", "--partition", "2018-01-05"])
    )
