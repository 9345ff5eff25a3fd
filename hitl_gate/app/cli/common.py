"""What every `hitl` command shares: the home folder, the domains folders and the domain."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hitl_gate.core.home import HitlPaths

DEFAULT_DOMAIN = "consumer_credit"


def selected_domain(args: argparse.Namespace) -> str:
    """The domain named by `--domain`, or the default one."""
    return args.domain or DEFAULT_DOMAIN


def use_domains_dir(args: argparse.Namespace) -> None:
    """Export `--domains-dir` so this process and the definitions it loads see those domains."""
    from hitl_gate.core.domain import DOMAINS_ENV

    if getattr(args, "domains_dir", None):
        os.environ[DOMAINS_ENV] = str(Path(args.domains_dir).resolve())


def resolve_paths(args: argparse.Namespace) -> HitlPaths:
    """Paths from `--home` or the environment, without side effects (read-only commands)."""
    return HitlPaths.from_env(args.home)


def activate_paths(args: argparse.Namespace) -> HitlPaths:
    """Paths from `--home` or the environment, exported so the definitions see the same."""
    from hitl_gate.app.runner import use_paths

    paths = resolve_paths(args)
    use_paths(paths)
    return paths
