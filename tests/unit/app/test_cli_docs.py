"""Every `hitl ...` command line the README and docs/*.md show is one the CLI accepts.

Parse only here (tests/e2e/test_cli_docs_run.py runs them on the demo home): placeholders
the docs use (`D`, `NAME`, `FILE`...) are given a value of the right form, optional parts
(`[--to D]`) are included, and a line listing alternatives (`policy validate|whatif|...`)
must offer each of them as a subcommand.
"""

from __future__ import annotations

import re
import shlex
from functools import cache

import pytest

from hitl_gate.app.cli import build_parser
from hitl_gate.core.domain import PROJECT_ROOT

DOC_FILES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^\s*(?:\$ )?(?:\.venv/bin/)?hitl\s+(?P<args>.*)$")
OPTIONAL = re.compile(r"\[(--?[^\[\]]*)\]")  # `[--to D]`, not `analyst[queue]`
PLACEHOLDER_VALUES = {"D": "2018-01-15", "YYYY-MM-DD": "2018-01-15", "VERSION": "3"}


def documented_commands() -> list[tuple[str, str]]:
    """(file:line, command text after `hitl`) of every `hitl` line inside a code block."""
    found: list[tuple[str, str]] = []
    for path in DOC_FILES:
        in_block, pending, where = False, "", ""
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip().startswith("```"):
                in_block, pending = not in_block, ""
                continue
            if not in_block:
                continue
            if pending:
                pending += " " + line.strip()
            elif (match := COMMAND.match(line)) is not None:
                pending, where = match["args"], f"{path.name}:{number}"
            if pending and not pending.endswith("\\"):
                found.append((where, pending))
                pending = ""
            pending = pending.removesuffix("\\")
    return found


def argv_forms(text: str) -> list[list[str]]:
    """The argument lists one documented line stands for (alternatives split, `#` cut)."""
    words = shlex.split(OPTIONAL.sub(r"\1", text), comments=True)
    forms = []
    for alternative in " ".join(shlex.quote(w) for w in words).split(" '|' "):
        argv = shlex.split(alternative)
        if forms and argv and not argv[0].startswith("-"):  # `model list | promote ...`
            argv = [*forms[0][:1], *argv] if argv[0] not in _top_commands() else argv
        forms.append([PLACEHOLDER_VALUES.get(w, w) for w in argv])
    return forms


# One parser per test process: parsing leaves an argparse parser as it was, and building one
# costs about 10 ms (a hundred documented lines, several forms each).
parser = cache(build_parser)


def _top_commands() -> set[str]:
    return set(parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 50


@pytest.mark.parametrize(("where", "text"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_documented_command_parses(
    where: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in argv_forms(text):
        choices = next((w for w in argv if "|" in w and not w.startswith("-")), None)
        if choices is not None:  # `policy validate|whatif|...`: each is a subcommand
            prefix = argv[: argv.index(choices)]
            for name in choices.split("|"):
                with pytest.raises(SystemExit) as stop:
                    parser().parse_args([*prefix, name, "--help"])
                assert stop.value.code == 0, (where, name, capsys.readouterr().err)
            continue
        try:
            args = parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: hitl {' '.join(argv)}: {capsys.readouterr().err}")
        assert callable(args.func), where
