"""What every `hitl` command shares: the home folder and the default domain."""

from __future__ import annotations

import argparse

from hitl_gate.home import HitlPaths

DEFAULT_DOMAIN = "consumer_credit"


def resolve_paths(args: argparse.Namespace) -> HitlPaths:
    """Paths from `--home` or the environment, without side effects (read-only commands)."""
    return HitlPaths.from_env(args.home)


def activate_paths(args: argparse.Namespace) -> HitlPaths:
    """Paths from `--home` or the environment, exported so the definitions see the same."""
    from hitl_gate.runner import use_paths

    paths = resolve_paths(args)
    use_paths(paths)
    return paths
