"""`hitl`: the command line of hitl-gate.

One module per command group (`pipeline`, `review`, `audit`, ...), each with a `register`
function; adding a group is a new module and one line in `COMMAND_GROUPS`. Commands import what
they need when they run, so `hitl --help` and `hitl audit trace` stay fast and never pay for
Feast, MLflow or Great Expectations.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from hitl_gate.app.cli import (
    audit,
    domain,
    fairness,
    ingest,
    model,
    people,
    pipeline,
    policy,
    portal,
    retention,
    review,
)
from hitl_gate.app.cli.common import DEFAULT_DOMAIN, HitlArgumentParser, one_line

COMMAND_GROUPS = (
    pipeline,
    ingest,
    review,
    audit,
    policy,
    model,
    domain,
    retention,
    people,
    fairness,
    portal,
)


def add_global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """`--home`, `--domain`, `--domains-dir` and `--traceback`, valid on every command.

    A command that declares one of them itself (e.g. `audit trace --domain` with its own
    help) keeps its own.
    """
    options: list[tuple[str, dict[str, object]]] = [
        ("--home", {"help": "state folder (default: $HITL_HOME or ./.hitl)"}),
        (
            "--domain",
            {"help": f"decision domain (default {DEFAULT_DOMAIN}; `demo`: every domain)"},
        ),
        (
            "--domains-dir",
            {"help": "extra folder of <name>/domain.yaml declarations ($HITL_DOMAINS_DIR)"},
        ),
        (
            "--traceback",
            {
                "action": "store_true",
                "default": default or False,
                "help": "on an unexpected error, show Python's traceback instead of one line",
            },
        ),
    ]
    for flag, spec in options:
        if flag in parser._option_string_actions:
            continue
        parser.add_argument(flag, **{"default": default, **spec})  # type: ignore[arg-type]


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below `parser` that runs a command (has no subcommands of its own)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    found: list[argparse.ArgumentParser] = []
    for child in dict.fromkeys(groups[0].choices.values()):  # aliases share one parser
        found.extend(leaf_parsers(child))
    return found


def build_parser() -> argparse.ArgumentParser:
    """The `hitl` parser with every command group registered.

    The global options are accepted before the command (`hitl --domain X run ...`) and after
    it (`hitl run ... --domain X`, as the docs write them); after it they default to
    "not given", so they never undo the same option given before the command.
    """
    parser = HitlArgumentParser(prog="hitl", description=__doc__.splitlines()[0])
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    for leaf in leaf_parsers(parser):
        if leaf is not parser:
            add_global_options(leaf, default=argparse.SUPPRESS)
    return parser


@functools.cache
def shared_parser() -> argparse.ArgumentParser:
    """The parser `main` uses, built once per process: building it registers some 54
    subcommands (about 13 ms of CPU), paid on every in-process call otherwise (the tests and
    the demo call `main` hundreds of times). Parsing leaves it unchanged, and nothing in it
    depends on the environment or the home: those are read when a command runs."""
    return build_parser()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `hitl` script: every failure is one line on stderr and exit 1.

    Commands stop with `SystemExit(message)` for what people can fix; anything else that
    escapes (a bug, a refused file) is still shown as one line naming the command, with
    `--traceback` to see where it came from.
    """
    # Library deprecation notices (ibis on DuckDB 2, SQLAlchemy in MLflow) are for us, not users.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = shared_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("hitl: interrupted\n")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:
        if args.traceback:
            raise
        raise SystemExit(f"hitl {command_name(args)}: {describe_error(exc)}") from None


def command_name(args: argparse.Namespace) -> str:
    """The command as typed, e.g. `audit seal` (the group and its subcommands)."""
    parts = [args.command]
    parts += [v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]
    return " ".join(parts)


def describe_error(exc: Exception) -> str:
    """One line for an error that escaped a command: a locked file names its holder."""
    from hitl_gate.core.db_lock import AuditDatabaseLocked, is_lock_error, lock_message

    if isinstance(exc, AuditDatabaseLocked):
        return str(exc)
    if is_lock_error(exc):
        found = next((w for w in str(exc).split('"')[1:2]), "the database")
        return lock_message(Path(found), exc)
    missing = re.search(r'Cannot open database "([^"]+)".*does not exist', str(exc))
    if missing:
        return f"no database at {missing[1]}: nothing was recorded in this home yet"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no such file: {exc.filename}"
    text = one_line(str(exc)) or "(no message)"
    return f"{type(exc).__name__}: {text} (--traceback shows where)"


if __name__ == "__main__":
    main(sys.argv[1:])
