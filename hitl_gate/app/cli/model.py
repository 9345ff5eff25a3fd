"""Model governance commands: `hitl model list`, `promote`, `retire-challenger`, `train`.

Moving the `champion` alias changes which model decides real cases, so it is a model owner's
signed act (`--signing-key`, docs/people.md), recorded in the audit database
(`model_promotions`) with the signer, their key fingerprint, the signature, when, from and to.
"""

from __future__ import annotations

import argparse

from hitl_gate.app.cli.common import (
    domain_names,
    import_model_format_to_train,
    load_selected_domain,
    resolve_paths,
    settings_from,
)
from hitl_gate.app.cli.signing import add_signing_key, signed


def _model_name(args: argparse.Namespace) -> str:
    return args.name or load_selected_domain(args).model.name


def cmd_model_list(args: argparse.Namespace) -> None:
    """Print every registered version with family, aliases and validation AUC, then the history."""
    import polars as pl

    from models.registry import list_versions, promotion_history

    paths = resolve_paths(args)
    name = _model_name(args)
    versions = list_versions(name, paths.mlflow_dir)
    if versions.height == 0:
        raise SystemExit(f"model {name}: no registered versions in {paths.mlflow_dir}")
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, fmt_str_lengths=40):
        print(f"{name}: registered versions")
        print(versions.drop("run_id"))
        history = promotion_history(paths.audit_db, name)
        if history.height:
            print("\nalias moves (audit: model_promotions)")
            print(history.drop("model_name", "act_payload", "signature", strict=False))


def _model_domain(args: argparse.Namespace, name: str) -> str:
    """The domain whose model is `name`: its model owners may move its aliases."""
    for domain_name in domain_names(args):
        if load_selected_domain(args, domain_name).model.name == name:
            return domain_name
    raise SystemExit(f"REFUSED: no domain declares the model {name!r}")


def _move(args: argparse.Namespace, version: str | None, alias: str):  # noqa: ANN202 - Promotion
    """Sign and make one alias move; one line on refusal."""
    from hitl_gate.identity.signatures import MODELS
    from models.registry import PromotionError, promote, promotion_payload

    paths = resolve_paths(args)
    domain = _model_domain(args, args.name)
    payload = promotion_payload(domain, args.name, version, alias=alias, reason=args.reason)
    act = signed(payload, args.signing_key, MODELS, f"promotion of {args.name}@{alias}")
    try:
        return promote(
            args.name,
            version,
            alias=alias,
            act=act,
            domain=domain,
            mlflow_dir=paths.mlflow_dir,
            audit_db=paths.audit_db,
        )
    except PromotionError as exc:
        raise SystemExit(f"REFUSED: {exc}") from exc


def cmd_model_promote(args: argparse.Namespace) -> None:
    """Point an alias (champion by default) at a version: a model owner's signed act.

    A version the leakage gate flagged becomes champion only with `--override-leakage REASON`;
    the override is part of the signed reason, so the record shows who accepted the risk.
    """
    if args.alias == "champion":
        args.reason = _leakage_cleared(args)
    moved = _move(args, args.version, args.alias)
    print(
        f"{moved.model_name}@{moved.alias}: v{moved.from_version or '-'} -> v{moved.to_version} "
        f"by {moved.promoted_by} ({moved.signer_fingerprint}) at "
        f"{moved.promoted_at.isoformat(timespec='seconds')}"
    )


def _leakage_cleared(args: argparse.Namespace) -> str | None:
    """The promotion's reason, with the explicit leakage override when the version needs one."""
    from mlflow.exceptions import MlflowException

    from models.leakage import LeakageRefused, require_leakage_cleared
    from models.mlflow_store import configure

    client = configure(resolve_paths(args).mlflow_dir)
    try:
        override = require_leakage_cleared(
            client, args.name, args.version, override_reason=args.override_leakage
        )
    except LeakageRefused as exc:
        raise SystemExit(f"REFUSED: {exc} (--override-leakage REASON)") from exc
    except MlflowException as exc:  # the leakage tag is read first: governance's refusal
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise SystemExit(f"REFUSED: {args.name} has no version {args.version}") from exc
    reasons = [text for text in (args.reason, override) if text]
    return "; ".join(reasons) or None


def cmd_model_retire_challenger(args: argparse.Namespace) -> None:
    """Remove the challenger alias: shadow scoring stops from the next run (signed too)."""
    from models.registry import CHALLENGER

    moved = _move(args, None, CHALLENGER)
    print(f"{moved.model_name}@challenger removed (was v{moved.from_version or '-'})")


def cmd_model_train(args: argparse.Namespace) -> None:
    """Train and register a version of the given family through the domain's training job."""
    settings = settings_from(args)
    import_model_format_to_train(settings)
    from hitl_gate.app.runner import raise_for_failure, run_job
    from pipelines.jobs import training_job_name

    domain = load_selected_domain(args)
    config = {"ops": {f"{domain.name}__trained_model": {"config": {"model_family": args.family}}}}
    result = run_job(settings, training_job_name(domain), run_config=config)
    raise_for_failure(result, f"{domain.name} training ({args.family})")
    print(f"{domain.name}: {args.family} model trained and registered (run {result.run_id})")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `model` command group."""
    model = sub.add_parser("model", help="model registry governance").add_subparsers(
        dest="model_command", required=True
    )
    listing = model.add_parser("list", help="registered versions, aliases and alias history")
    listing.add_argument("name", nargs="?", help="registered model (default: the domain's)")
    listing.set_defaults(func=cmd_model_list)

    promote = model.add_parser("promote", help="point champion (or challenger) at a version")
    promote.add_argument("name")
    promote.add_argument("version")
    add_signing_key(promote)
    promote.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    promote.add_argument("--reason", help="why (kept in the audit record)")
    promote.add_argument(
        "--override-leakage",
        metavar="REASON",
        help="make a version the leakage gate flagged champion anyway, saying why",
    )
    promote.set_defaults(func=cmd_model_promote)

    retire = model.add_parser("retire-challenger", help="remove the challenger alias")
    retire.add_argument("name")
    add_signing_key(retire)
    retire.add_argument("--reason")
    retire.set_defaults(func=cmd_model_retire_challenger)

    train = model.add_parser("train", help="train a version of a model family")
    train.add_argument(
        "--family",
        default="logistic_scorecard",
        choices=["logistic_scorecard", "gradient_boosting"],
    )
    train.set_defaults(func=cmd_model_train)
