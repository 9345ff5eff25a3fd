"""What a child process of the token tests runs: a light module of its own, so that a child
imports only the audit keys, not the test module's command line and Dagster resources (about
4 s each spawned child; the forkserver's children, tests/fork_server.py, have them loaded)."""

from __future__ import annotations

from hitl_gate.audit.keys import checkpoint_signer, public_key_hex
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import AuditKeySettings


def public_key_of(home: str) -> str:
    """The public key of the home's checkpoint signer (its token made on first use)."""
    return public_key_hex(checkpoint_signer(HitlPaths.at(home), AuditKeySettings()))
