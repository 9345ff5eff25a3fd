"""Model governance commands: `hitl model list`, `promote`, `retire-challenger`, `train`.

Moving the `champion` alias changes which model decides real cases, so it is a named person's
act, recorded in the audit database (`model_promotions`) with who, when, from and to.
"""

from __future__ import annotations

import argparse

from hitl_gate.app.cli.common import load_selected_domain, resolve_paths, settings_from


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
            print(history.drop("model_name"))


def cmd_model_promote(args: argparse.Namespace) -> None:
    """Point an alias (champion by default) at a version and record who did it."""
    from models.registry import PromotionError, promote

    paths = resolve_paths(args)
    try:
        moved = promote(
            args.name,
            args.version,
            alias=args.alias,
            by=args.by,
            mlflow_dir=paths.mlflow_dir,
            audit_db=paths.audit_db,
            reason=args.reason,
        )
    except PromotionError as exc:
        raise SystemExit(f"refused: {exc}") from exc
    print(
        f"{moved.model_name}@{moved.alias}: v{moved.from_version or '-'} -> v{moved.to_version} "
        f"by {moved.promoted_by} at {moved.promoted_at.isoformat(timespec='seconds')}"
    )


def cmd_model_retire_challenger(args: argparse.Namespace) -> None:
    """Remove the challenger alias: shadow scoring stops from the next run."""
    from models.registry import CHALLENGER, PromotionError, promote

    paths = resolve_paths(args)
    try:
        moved = promote(
            args.name,
            None,
            alias=CHALLENGER,
            by=args.by,
            mlflow_dir=paths.mlflow_dir,
            audit_db=paths.audit_db,
            reason=args.reason,
        )
    except PromotionError as exc:
        raise SystemExit(f"refused: {exc}") from exc
    print(f"{moved.model_name}@challenger removed (was v{moved.from_version or '-'})")


def cmd_model_train(args: argparse.Namespace) -> None:
    """Train and register a version of the given family through the domain's training job."""
    from hitl_gate.app.runner import raise_for_failure, run_job
    from pipelines.jobs import training_job_name

    settings = settings_from(args)
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
    promote.add_argument("--by", required=True, help="who approves the promotion")
    promote.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    promote.add_argument("--reason", help="why (kept in the audit record)")
    promote.set_defaults(func=cmd_model_promote)

    retire = model.add_parser("retire-challenger", help="remove the challenger alias")
    retire.add_argument("name")
    retire.add_argument("--by", required=True)
    retire.add_argument("--reason")
    retire.set_defaults(func=cmd_model_retire_challenger)

    train = model.add_parser("train", help="train a version of a model family")
    train.add_argument(
        "--family",
        default="logistic_scorecard",
        choices=["logistic_scorecard", "gradient_boosting"],
    )
    train.set_defaults(func=cmd_model_train)
