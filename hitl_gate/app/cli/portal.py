"""`hitl portal`: serve the review portal, enrol a person's credential, make the portal's key."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from hitl_gate.app.cli.common import (
    audit_signer,
    domain_names,
    load_selected_domain,
    settings_from,
)


def cmd_key(args: argparse.Namespace) -> None:
    """Make the portal's SSH key once and print how to register it."""
    from hitl_gate.app.portal.config import portal_key_path
    from hitl_gate.identity.signatures import new_key_pair

    key = portal_key_path(settings_from(args).paths.secrets_dir)
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new_key_pair(key, "hitl-portal")
    print(f"portal key: {key}.pub")
    print("register it (an administrator signs):")
    print(
        "  hitl people add portal --name 'Review portal' --grant '*:portal' "
        f"--public-key {key}.pub --signing-key <your admin key>"
    )


def cmd_enrol(args: argparse.Namespace) -> None:
    """Enrol a person's portal password and TOTP, bound by their own SSH signature."""
    from hitl_gate.app.portal.credentials import (
        Credential,
        CredentialError,
        record_enrolment,
        save_credential,
        sign_enrolment,
    )
    from hitl_gate.core.database import audit_connection
    from hitl_gate.identity.signatures import SignatureError
    from hitl_gate.identity.store import load_registry

    paths = settings_from(args).paths
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("portal password: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit("the passwords differ")
    try:
        credential = Credential.new(args.person, password)
        act = sign_enrolment(credential, Path(args.key).expanduser())
        with audit_connection(paths.audit_db) as con:
            record_enrolment(con, load_registry(con), args.person, act)
    except (CredentialError, SignatureError) as error:
        raise SystemExit(str(error)) from error
    save_credential(paths.secrets_dir, credential)
    print(f"{args.person}: portal credential enrolled (enrolment {act.payload_sha256[:12]})")
    print("add this to your authenticator app (TOTP):")
    print(f"  {credential.provisioning_uri()}")


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve the portal (127.0.0.1 by default; another host needs --host explicitly)."""
    import uvicorn

    from hitl_gate.app.portal.app import build_app
    from hitl_gate.app.portal.config import portal_config, portal_sealer

    settings = settings_from(args)
    names = [args.domain] if args.domain and args.domain != "demo" else domain_names(args)
    domains = {name: load_selected_domain(args, name) for name in names}
    # Portal verdicts are sealed by the portal as it writes them (review/intake/sealing.py).
    seal = portal_sealer(settings, audit_signer(args))
    config = portal_config(settings.paths, domains, host=args.host, port=args.port, seal=seal)
    print(f"review portal on http://{config.settings.host}:{config.settings.port}/")
    uvicorn.run(
        build_app(config),
        host=config.settings.host,
        port=config.settings.port,
        log_level="warning",
        access_log=False,  # access logs would carry case references and client addresses
        server_header=False,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `portal` command group."""
    group = sub.add_parser("portal", help="the review portal").add_subparsers(
        dest="portal_command", required=True
    )
    serve = group.add_parser("serve", help="serve the portal (default 127.0.0.1:8765)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(func=cmd_serve)
    enrol = group.add_parser("enrol", help="enrol your portal password and TOTP (signed)")
    enrol.add_argument("person")
    enrol.add_argument("--key", required=True, help="your registered SSH private key")
    enrol.add_argument("--password-stdin", action="store_true", help="read the password")
    enrol.set_defaults(func=cmd_enrol)
    key = group.add_parser("key", help="make the portal's SSH key and show how to register it")
    key.set_defaults(func=cmd_key)
