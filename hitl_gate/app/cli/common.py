"""What every `hitl` command shares: the parser, day arguments, the settings and the domain."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from typing import TYPE_CHECKING, NoReturn

from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import AUDIT_KEY_ENV, AUDIT_TOKEN_PIN_ENV, HitlSettings

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner
    from hitl_gate.core.domain import DomainConfig

DEFAULT_DOMAIN = "consumer_credit"


class HitlArgumentParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line on stderr (exit 2), never the usage block.

    argparse prints the whole usage before its error; for a mistake people read the reason,
    so the line names the command, the reason and where the full usage is.
    """

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def day(text: str) -> date:
    """A `YYYY-MM-DD` day argument; anything else is refused naming the form expected."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day: expected YYYY-MM-DD, e.g. 2018-01-15"
        ) from None


def positive_int(text: str) -> int:
    """A whole number of at least 1 (an argparse type)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def selected_domain(args: argparse.Namespace) -> str:
    """The domain named by `--domain`, or the default one."""
    return args.domain or DEFAULT_DOMAIN


def settings_from(args: argparse.Namespace) -> HitlSettings:
    """The settings of this invocation: the environment, with `--home` and `--domains-dir` winning.

    The command line is an edge, so it reads `os.environ` here, once per command, and hands the
    settings on; nothing is written back to the environment.
    """
    return HitlSettings.from_environ(
        os.environ, home=args.home, domains_dir=getattr(args, "domains_dir", None)
    )


def import_model_format_to_train(settings: HitlSettings) -> None:
    """Import skops before the training job's libraries when the job trains in this process
    (the in-process executor): it saves the model with skops, whose import costs more the more
    modules are loaded before it (models/model_format.py). Another executor trains elsewhere."""
    if settings.executor == "in_process":
        from models.model_format import import_model_format

        import_model_format()


def resolve_paths(args: argparse.Namespace) -> HitlPaths:
    """The folders of this invocation (`settings_from(args).paths`)."""
    return settings_from(args).paths


def require_audit_db(paths: HitlPaths) -> None:
    """Stop with one line when the home has no audit database (nothing has run in it)."""
    if not paths.audit_db.exists():
        raise SystemExit(
            f"no audit database at {paths.audit_db}: nothing was recorded in this home yet"
        )


def load_selected_domain(args: argparse.Namespace, name: str | None = None) -> DomainConfig:
    """Domain `name` (default: `--domain`, else the default one), searching `--domains-dir` too."""
    from hitl_gate.core.domain import DomainConfigError, load_domain

    wanted = name or selected_domain(args)
    try:
        return load_domain(wanted, settings_from(args).domains_dirs)
    except DomainConfigError as exc:
        known = domain_names(args)
        if wanted not in known:
            raise SystemExit(
                f"unknown domain {wanted!r}; known domains: {', '.join(known) or 'none'}"
            ) from exc
        raise SystemExit(f"domain {wanted!r}: {one_line(str(exc))}") from exc


def one_line(text: str) -> str:
    """`text` on one line (an error shown to a person: its lines joined with `; `)."""
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def domain_names(args: argparse.Namespace) -> list[str]:
    """Every declared domain, `--domains-dir` included."""
    from hitl_gate.core.domain import available_domains

    return available_domains(settings_from(args).domains_dirs)


def injected_audit_key() -> str | None:
    """The audit signing key the deployment injects (`HITL_AUDIT_SIGNING_KEY`), if any.

    A secret, so not part of `HitlSettings`; pipeline runs read it through the `AuditDatabase`
    resource's `EnvVar`, the commands that sign outside a run read it here.
    """
    return os.environ.get(AUDIT_KEY_ENV, "").strip() or None


def audit_signer(args: argparse.Namespace) -> CheckpointSigner:
    """The installation's checkpoint signer for commands that sign outside a run.

    The token PIN (`HITL_AUDIT_TOKEN_PIN`) and a legacy injected seed are secrets, read here
    at the edge like `injected_audit_key`; which signer and token come from the settings.
    """
    from hitl_gate.audit.keys import checkpoint_signer

    settings = settings_from(args)
    return checkpoint_signer(
        settings.paths,
        settings.audit_keys,
        pin=os.environ.get(AUDIT_TOKEN_PIN_ENV, "").strip() or None,
        seed_hex=injected_audit_key(),
    )
