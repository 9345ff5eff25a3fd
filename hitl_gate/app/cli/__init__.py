"""`hitl`: the command line of hitl-gate.

One module per command group (`pipeline`, `review`, `audit`, ...), each with a `register`
function; adding a group is a new module and one line in `COMMAND_GROUPS`. Commands import what
they need when they run, so `hitl --help` and `hitl audit trace` stay fast and never pay for
Feast, MLflow or Great Expectations.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

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
from hitl_gate.app.cli.common import DEFAULT_DOMAIN

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


def build_parser() -> argparse.ArgumentParser:
    """The `hitl` parser with every command group registered."""
    parser = argparse.ArgumentParser(prog="hitl", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="state folder (default: $HITL_HOME or ./.hitl)")
    parser.add_argument(
        "--domain", help=f"decision domain (default {DEFAULT_DOMAIN}; `demo`: every domain)"
    )
    parser.add_argument(
        "--domains-dir",
        help="extra folder of <name>/domain.yaml declarations (default: $HITL_DOMAINS_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `hitl` script."""
    # Library deprecation notices (ibis on DuckDB 2, SQLAlchemy in MLflow) are for us, not users.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
