"""`hitl portal`: registered in the CLI, binding to localhost unless told otherwise."""

from __future__ import annotations

from hitl_gate.app.cli import build_parser


def test_portal_serve_binds_to_localhost_by_default() -> None:
    args = build_parser().parse_args(["portal", "serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8765)


def test_portal_enrol_needs_the_persons_own_key() -> None:
    args = build_parser().parse_args(["portal", "enrol", "analyst-7", "--key", "k"])
    assert (args.person, args.key, args.password_stdin) == ("analyst-7", "k", False)
