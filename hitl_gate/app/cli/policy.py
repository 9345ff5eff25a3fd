"""Policy team commands: `hitl policy validate|test|whatif|backtest|shadow|activate|approve|
rollback|halt|resume|status|qa`.

Everything a policy change needs before and after it goes live: validate a file (structure,
case columns, unreachable rules, contradictory overlaps), run its test cases, replay it on
stored past cases against the policy in force or the recorded routes, run it in shadow,
activate it (two people's signatures, passing tests), roll back in one step, and stop
automation at once. Every state change is signed with the actor's SSH key (`--signing-key`).
State changes are rows in the audit DB (`policy_activations`, `automation_halts`,
`policy_shadows`); see docs/policies.md.
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from hitl_gate.app.cli.common import day, load_selected_domain, resolve_paths
from hitl_gate.app.cli.signing import add_signing_key, signed
from hitl_gate.app.day_range import day_range

if TYPE_CHECKING:
    import polars as pl

    from hitl_gate.core.domain import DomainConfig
    from policies.model import Policy


def _domain(args: argparse.Namespace):  # noqa: ANN202 - DomainConfig, imported lazily
    return load_selected_domain(args)


def _days(args: argparse.Namespace) -> tuple[date, date]:
    """`--partition D`, `--from D --to D`, or (default) every stored day."""
    if args.partition:
        return args.partition, args.partition
    start = args.start or date.min
    end = args.end or date.max - timedelta(days=1)
    return day_range(start, end, first="--from", last="--to")


def _load_file(path: str):  # noqa: ANN202 - Policy
    from policies.model import PolicyError, load_policy

    if not Path(path).is_file():
        raise SystemExit(f"no such policy file: {path}")
    try:
        return load_policy(Path(path))
    except PolicyError as exc:
        raise SystemExit(f"INVALID policy:\n{exc}") from exc


def _sample_cases(args: argparse.Namespace, domain):  # noqa: ANN001, ANN202
    """The most recent stored days of cases (real data for validation), or None."""
    from policies.whatif import load_stored_cases, stored_case_files

    files = stored_case_files(resolve_paths(args).warehouse, domain.name, date.min, date.max)
    return load_stored_cases(files[-7:]) if files else None


def _checked_against_cases(
    args: argparse.Namespace, domain: DomainConfig, policy: Policy, refusal: str
) -> tuple[pl.DataFrame | None, dict]:
    """Recent stored cases (or None) and the column schema the policy was validated against.

    Stops with `refusal` and every problem listed when the policy does not fit the columns:
    the stored cases' when there are any, the domain's declared case columns otherwise.
    """
    from hitl_gate.quality.case_schema import declared_case_schema
    from policies.engine import validate_policy

    cases = _sample_cases(args, domain)
    schema = dict(cases.schema) if cases is not None else declared_case_schema(domain)
    problems = validate_policy(policy, schema)
    if problems:
        raise SystemExit(f"{refusal}:\n" + "\n".join(f"  {p}" for p in problems))
    return cases, schema


def cmd_validate(args: argparse.Namespace) -> None:
    """Validate a policy file against the domain's case columns; exit 1 on any error."""
    from policies.analysis import analyse_policy

    domain = _domain(args)
    policy = _load_file(args.file)
    cases, schema = _checked_against_cases(args, domain, policy, "INVALID policy")
    analysis = analyse_policy(policy, schema, cases)
    print(f"{policy.source}: {policy.version} ({len(policy.rules)} rules), {analysis.method}")
    for finding in analysis.findings:
        print(f"  {finding.severity.upper()}: {finding.message}")
    if analysis.errors:
        raise SystemExit(f"INVALID policy: {len(analysis.errors)} error(s)")
    print("OK: the policy can go live" + (" (with warnings)" if analysis.findings else ""))


def _test_failures(domain, path: Path) -> list[str]:  # noqa: ANN001 - DomainConfig
    """Failures of a policy file's test cases (a missing test file is one), typed by the
    domain's declared case columns."""
    from hitl_gate.quality.case_schema import declared_case_schema
    from policies.testing import check_policy_file

    report = check_policy_file(path, declared_case_schema(domain))
    print(report.summary())
    return report.failures


def cmd_test(args: argparse.Namespace) -> None:
    """Run the test cases of one policy file, or of every policy file of the domain."""
    from policies.control import policy_files

    domain = _domain(args)
    if args.file and not Path(args.file).is_file():
        raise SystemExit(f"no such policy file: {args.file}")
    files = [Path(args.file)] if args.file else policy_files(domain)
    failures = [f for path in files for f in _test_failures(domain, path)]
    if failures:
        raise SystemExit("FAILED policy tests:\n" + "\n".join(f"  {f}" for f in failures))
    print(f"OK: {len(files)} policy file(s) pass their tests")


def cmd_whatif(args: argparse.Namespace) -> None:
    """Re-route stored past cases under a candidate and compare with the policy in force."""
    import polars as pl

    from hitl_gate.core.database import audit_connection, query_frame
    from policies.control import policy_in_force
    from policies.route_risk import latest_outcomes
    from policies.whatif import compare

    paths = resolve_paths(args)
    domain = _domain(args)
    candidate, files, cases = _candidate_on_stored_cases(args, domain)
    verdicts = outcomes = None
    if paths.audit_db.exists():
        with audit_connection(paths.audit_db, read_only=True) as con:
            active = policy_in_force(con, domain)
            verdicts = query_frame(
                con, "SELECT case_id, verdict FROM verdicts WHERE domain = ?", [domain.name]
            )
            outcomes = latest_outcomes(con, domain.name)
    else:
        active = policy_in_force(None, domain)
    bad = domain.model.label.positive_values
    result = compare(active.policy, candidate, cases, domain.case_id, verdicts, outcomes, bad)
    with pl.Config(
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_cols=-1,
        tbl_width_chars=160,
        float_precision=4,
    ):
        print(
            f"{domain.name}: {result.cases} stored cases from {files[0].stem} to "
            f"{files[-1].stem}, active {active.policy.version} ({active.origin}) -> "
            f"candidate {candidate.version}"
        )
        print("\nRoute transitions (rows: active, columns: candidate):")
        print(result.transitions)
        print("\nReview workload per queue:")
        print(result.workload)
        print(
            "\nBad rate per route (expected: mean PD of the route's cases; observed: share of "
            f"known outcomes in {', '.join(bad)}):"
        )
        print(result.risk)
    print(f"\n{result.changed} of {result.cases} cases change route.")
    if result.human_declined_now_approved is not None:
        print(
            f"{result.human_declined_now_approved} cases a reviewer declined would be "
            "auto-approved by the candidate."
        )


def cmd_backtest(args: argparse.Namespace) -> None:
    """Replay a candidate on recorded cases; compare with recorded routes, verdicts, outcomes."""
    import polars as pl

    from hitl_gate.core.database import audit_connection
    from policies.backtest import backtest, recorded_decisions

    paths = resolve_paths(args)
    domain = _domain(args)
    start, end = _days(args)
    if not paths.audit_db.exists():
        raise SystemExit(f"{domain.name}: no recorded cases from {start} to {end}")
    candidate, files, cases = _candidate_on_stored_cases(args, domain)
    with audit_connection(paths.audit_db, read_only=True) as con:
        recorded = recorded_decisions(con, domain.name, start, end)
    bad = domain.model.label.positive_values
    result = backtest(candidate, cases, recorded, domain.case_id, bad)
    with pl.Config(
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_rows=30,
        fmt_str_lengths=40,
    ):
        print(
            f"{domain.name}: backtest of {candidate.version} on {result.cases} recorded cases "
            f"from {files[0].stem} to {files[-1].stem}"
        )
        print("\nRoute transitions (rows: recorded route, columns: candidate):")
        print(result.transitions)
        print("\nReview workload per queue (recorded vs candidate):")
        print(result.workload)
        print(f"\nAutomatic approvals and later outcomes (bad = {', '.join(bad)}):")
        print(result.outcomes)
    print(f"\n{result.changed} of {result.cases} cases change route.")
    print(
        f"Of {result.with_verdict} cases with a reviewer verdict: "
        f"{result.human_declined_auto_approved} declined by a reviewer would be auto-approved, "
        f"{result.human_approved_auto_declined} approved by a reviewer would be auto-declined."
    )


def _candidate_on_stored_cases(
    args: argparse.Namespace, domain: DomainConfig
) -> tuple[Policy, list[Path], pl.DataFrame]:
    """The candidate policy file, the stored case files of `--from..--to` and their cases.

    Stops with a clear message when there are no stored cases or the candidate does not fit
    their columns (whatif and backtest both replay a candidate on what was recorded).
    """
    from policies.engine import validate_policy
    from policies.whatif import load_stored_cases, stored_case_files

    candidate = _load_file(args.file)
    start, end = _days(args)
    files = stored_case_files(resolve_paths(args).warehouse, domain.name, start, end)
    try:
        cases = load_stored_cases(files)
    except FileNotFoundError as exc:
        raise SystemExit(f"{domain.name}: {exc} ({start} to {end})") from exc
    problems = validate_policy(candidate, cases.schema)
    if problems:
        raise SystemExit("INVALID policy:\n" + "\n".join(f"  {p}" for p in problems))
    return candidate, files, cases


def _write(args: argparse.Namespace):  # noqa: ANN202 - context manager of a connection
    from hitl_gate.core.database import audit_connection

    return audit_connection(resolve_paths(args).audit_db)


def _refused(exc: Exception) -> SystemExit:
    return SystemExit(f"REFUSED: {exc}")


def cmd_activate(args: argparse.Namespace) -> None:
    """Record a signed activation of a policy version after validation; it routes once a
    second person approves it (now with `--approval-key`, or later with `hitl policy approve`)."""
    from hitl_gate.identity.signatures import POLICY
    from policies.analysis import analyse_policy
    from policies.control import (
        PolicyControlError,
        activation_payload,
        find_policy_file,
        record_activation,
    )
    from policies.engine import validate_policy

    domain = _domain(args)
    try:
        path = find_policy_file(domain, args.version)
    except PolicyControlError as exc:
        raise _refused(exc) from exc
    policy = _load_file(str(path))
    failures = _test_failures(domain, path)
    if failures:
        raise SystemExit(
            "REFUSED: the policy's tests do not pass:\n" + "\n".join(f"  {f}" for f in failures)
        )
    cases = _sample_cases(args, domain)
    if cases is not None:  # without stored cases the pipeline validates at its next run
        problems = validate_policy(policy, cases.schema)
        problems += [f.message for f in analyse_policy(policy, dict(cases.schema), cases).errors]
        if problems:
            raise SystemExit("REFUSED: invalid policy:\n" + "\n".join(f"  {p}" for p in problems))
    with _write(args) as con:
        try:
            payload = activation_payload(domain.name, policy, reason=args.reason)
            act = signed(payload, args.signing_key, POLICY, f"activation of {policy.version}")
            seq = record_activation(con, domain, policy, act)
            print(
                f"{domain.name}: {policy.version} ({policy.digest[:12]}) activation #{seq} "
                "recorded, PENDING APPROVAL by a second person (hitl policy approve); it does "
                "not route until then"
            )
            if args.approval_key:
                _approve(con, domain, args.approval_key, seq)
        except PolicyControlError as exc:
            raise _refused(exc) from exc


def _approve(con, domain, key: str, seq: int | None) -> None:  # noqa: ANN001 - lazy types
    from hitl_gate.identity.signatures import POLICY
    from policies.control import approval_payload, approve_activation, pending_activation

    pending = pending_activation(con, domain.name, seq)
    payload = approval_payload(domain.name, pending)
    act = signed(payload, key, POLICY, f"approval of {pending.policy.version}")
    approved = approve_activation(con, domain, act, seq=pending.seq)
    print(
        f"{domain.name}: {pending.policy.version} ({pending.policy.digest[:12]}) approved as "
        f"#{approved} (activated by {pending.activated_by}); it routes from the next run"
    )


def cmd_approve(args: argparse.Namespace) -> None:
    """Approve the pending activation: a second person signs the same policy digest."""
    from policies.control import PolicyControlError

    domain = _domain(args)
    with _write(args) as con:
        try:
            _approve(con, domain, args.signing_key, args.seq)
        except PolicyControlError as exc:
            raise _refused(exc) from exc


def cmd_shadow_set(args: argparse.Namespace) -> None:
    """Run a candidate in shadow on every new partition: stored and compared, never acted on."""
    from policies.control import PolicyControlError, set_shadow

    domain = _domain(args)
    policy = _load_file(args.file)
    _checked_against_cases(args, domain, policy, "REFUSED: invalid policy")
    with _write(args) as con:
        try:
            seq = set_shadow(con, domain.name, policy, by=args.by, reason=args.reason)
        except PolicyControlError as exc:
            raise _refused(exc) from exc
    print(f"{domain.name}: {policy.version} ({policy.digest[:12]}) runs in shadow from the next "
          f"run (#{seq}, by {args.by}); it decides nothing")  # fmt: skip


def cmd_shadow_clear(args: argparse.Namespace) -> None:
    """Stop the shadow policy (its stored decisions stay)."""
    from policies.control import PolicyControlError, set_shadow

    domain = _domain(args)
    with _write(args) as con:
        try:
            set_shadow(con, domain.name, None, by=args.by, reason=args.reason)
        except PolicyControlError as exc:
            raise _refused(exc) from exc
    print(f"{domain.name}: shadow policy cleared by {args.by}")


def cmd_shadow_report(args: argparse.Namespace) -> None:
    """Compare the stored shadow decisions with the live routes, per shadow policy."""
    import polars as pl

    from hitl_gate.core.database import audit_connection, query_frame
    from policies.shadow import compare_shadow

    domain = _domain(args)
    start, end = _days(args)
    db = resolve_paths(args).audit_db
    if not db.exists():
        raise SystemExit(f"{domain.name}: no audit database yet")
    with audit_connection(db, read_only=True) as con:
        rows = query_frame(
            con,
            "SELECT * FROM shadow_decisions WHERE domain = ? AND partition_date BETWEEN ? AND ? "
            "ORDER BY policy_version, partition_date, case_id",
            [domain.name, start, end],
        )
    if rows.height == 0:
        print(f"{domain.name}: no shadow decisions stored for those days")
        return
    for (version,), part in rows.group_by("policy_version", maintain_order=True):
        result = compare_shadow(part)
        first, last = part["partition_date"].min(), part["partition_date"].max()
        print(f"{domain.name}: shadow {version} on {result.cases} live cases, {first!s} to "
              f"{last!s}: same route for {result.agreement:.1%}, "
              f"{result.newly_auto_approved} it would auto-approve that live did not")  # fmt: skip
        with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            print("Route transitions (rows: live policy, columns: shadow policy):")
            print(result.transitions)


def cmd_rollback(args: argparse.Namespace) -> None:
    """Return to the policy in force before the current one."""
    from hitl_gate.identity.signatures import POLICY
    from policies.control import PolicyControlError, rollback, rollback_payload, rollback_target

    domain = _domain(args)
    with _write(args) as con:
        try:
            target = rollback_target(con, domain)
            payload = rollback_payload(domain.name, target, reason=args.reason)
            act = signed(payload, args.signing_key, POLICY, f"rollback to {target.version}")
            policy = rollback(con, domain, act)
        except PolicyControlError as exc:
            raise _refused(exc) from exc
    print(f"{domain.name}: rolled back to {policy.version} ({policy.digest[:12]})")


def cmd_halt(args: argparse.Namespace, halted: bool = True) -> None:
    """Kill switch: every new case goes to human review and nothing automatic executes."""
    from hitl_gate.identity.signatures import AUTOMATION
    from policies.control import PolicyControlError, halt_payload, set_halt

    domain = _domain(args)
    what = f"{'halt' if halted else 'resume'} of {domain.name}"
    keys = [args.signing_key] + ([] if halted else [args.second_signing_key])
    with _write(args) as con:
        try:
            payload = halt_payload(con, domain.name, halted=halted, reason=args.reason)
            acts = [signed(payload, key, AUTOMATION, what) for key in keys]
            state = set_halt(con, domain.name, halted=halted, acts=acts)
        except PolicyControlError as exc:
            raise _refused(exc) from exc
    verb = "HALTED" if halted else "resumed"
    print(f"{domain.name}: automation {verb} by {state.actor}: {state.reason}")


def cmd_resume(args: argparse.Namespace) -> None:
    cmd_halt(args, halted=False)


def cmd_status(args: argparse.Namespace) -> None:
    """The policy in force, the kill switch and the activation history."""
    import polars as pl

    from hitl_gate.core.database import audit_connection
    from policies.control import (
        PolicyControlError,
        activation_history,
        halt_state,
        pending_activation,
        policy_in_force,
        shadow_policy,
    )

    domain = _domain(args)
    db = resolve_paths(args).audit_db
    if not db.exists():
        in_force = policy_in_force(None, domain)
        print(f"{domain.name}: {in_force.policy.version} ({in_force.origin}); running")
        return
    with audit_connection(db, read_only=True) as con:
        in_force = policy_in_force(con, domain)
        halt = halt_state(con, domain.name)
        history = activation_history(con, domain.name)
        shadow = shadow_policy(con, domain.name)
        try:
            pending = pending_activation(con, domain.name)
        except PolicyControlError:
            pending = None
    state = (
        f"HALTED since {halt.since} by {halt.actor}: {halt.reason}" if halt.halted else "running"
    )
    print(f"{domain.name}: {in_force.policy.version} ({in_force.policy.digest[:12]}, "
          f"{in_force.origin}); automation {state}")  # fmt: skip
    if pending is not None:
        print(
            f"PENDING APPROVAL: {pending.policy.version} ({pending.policy.digest[:12]}), "
            f"activation #{pending.seq} by {pending.activated_by}; `hitl policy approve`"
        )
    if shadow is not None:
        print(f"in shadow (decides nothing): {shadow.version} ({shadow.digest[:12]})")
    if history.height:
        with pl.Config(tbl_hide_dataframe_shape=True, tbl_rows=50, fmt_str_lengths=24):
            print(history.drop("policy_digest", "signer_fingerprint"))


def cmd_qa(args: argparse.Namespace) -> None:
    """Estimated error rate of automation from QA-sampled cases that have a verdict."""
    from hitl_gate.core.database import audit_connection, query_frame
    from policies.qa import estimate_error_rate

    domain = _domain(args)
    with audit_connection(resolve_paths(args).audit_db, read_only=True) as con:
        reviewed = query_frame(
            con,
            "SELECT d.proposed_route, d.qa_probability, v.verdict FROM decisions d "
            "JOIN verdicts v USING (domain, case_id) WHERE d.domain = ? AND d.qa_sample",
            [domain.name],
        )
    print(f"{domain.name}: automation error rate from {reviewed.height} reviewed QA samples")
    for e in estimate_error_rate(reviewed):
        print(
            f"  {e.stratum:>14}: {e.disagreements}/{e.reviewed} overturned, rate "
            f"{e.rate:.2%}, 95% CI [{e.low:.2%}, {e.high:.2%}]"
        )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `policy` command group."""
    group = sub.add_parser("policy", help="policy team commands").add_subparsers(
        dest="policy_command", required=True
    )
    validate = group.add_parser("validate", help="validate a policy file (exit 1 when invalid)")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_validate)

    test = group.add_parser("test", help="run a policy file's test cases (<file>.cases.yaml)")
    test.add_argument("file", nargs="?", help="a policy file (default: every file of the domain)")
    test.set_defaults(func=cmd_test)

    whatif = group.add_parser("whatif", help="replay a candidate policy on stored past cases")
    whatif.add_argument("file")
    whatif.add_argument("--partition", type=day, help="one day, YYYY-MM-DD")
    whatif.add_argument("--from", dest="start", type=day, help="first day, YYYY-MM-DD")
    whatif.add_argument("--to", dest="end", type=day, help="last day, YYYY-MM-DD")
    whatif.set_defaults(func=cmd_whatif)

    back_test = group.add_parser(
        "backtest", help="replay a candidate on recorded cases vs their recorded routes"
    )
    back_test.add_argument("file")
    back_test.add_argument("--partition", type=day, help="one day, YYYY-MM-DD")
    back_test.add_argument("--from", dest="start", type=day, help="first day, YYYY-MM-DD")
    back_test.add_argument("--to", dest="end", type=day, help="last day, YYYY-MM-DD")
    back_test.set_defaults(func=cmd_backtest)

    activate = group.add_parser("activate", help="put a policy version (or file) in force")
    activate.add_argument("version", help="a version declared by a file of the domain, or a path")
    add_signing_key(activate)
    activate.add_argument(
        "--approval-key",
        metavar="PATH",
        help="a second, different person's key: approve in the same command",
    )
    activate.add_argument("--reason")
    activate.set_defaults(func=cmd_activate)

    approve = group.add_parser(
        "approve", help="approve the pending activation (a second person's signature)"
    )
    add_signing_key(approve)
    approve.add_argument("--seq", type=int, help="the activation number (default: the pending one)")
    approve.set_defaults(func=cmd_approve)

    shadow = group.add_parser(
        "shadow", help="run a candidate in shadow on live partitions (never acted on)"
    ).add_subparsers(dest="shadow_command", required=True)
    shadow_set = shadow.add_parser("set", help="route every new partition with FILE in shadow too")
    shadow_set.add_argument("file")
    shadow_set.add_argument("--by", required=True)
    shadow_set.add_argument("--reason")
    shadow_set.set_defaults(func=cmd_shadow_set)
    shadow_clear = shadow.add_parser("clear", help="stop the shadow policy")
    shadow_clear.add_argument("--by", required=True)
    shadow_clear.add_argument("--reason")
    shadow_clear.set_defaults(func=cmd_shadow_clear)
    shadow_report = shadow.add_parser("report", help="shadow routes vs live routes")
    shadow_report.add_argument("--partition", type=day, help="one day, YYYY-MM-DD")
    shadow_report.add_argument("--from", dest="start", type=day, help="first day, YYYY-MM-DD")
    shadow_report.add_argument("--to", dest="end", type=day, help="last day, YYYY-MM-DD")
    shadow_report.set_defaults(func=cmd_shadow_report)

    back = group.add_parser("rollback", help="return to the previous policy in force")
    add_signing_key(back)
    back.add_argument("--reason")
    back.set_defaults(func=cmd_rollback)

    for name, func, text in (
        ("halt", cmd_halt, "kill switch: send every case to human review, execute nothing"),
        ("resume", cmd_resume, "lift the kill switch"),
    ):
        parser = group.add_parser(name, help=text)
        add_signing_key(parser)
        if name == "resume":
            add_signing_key(parser, flag="--second-signing-key")  # two people lift it
        parser.add_argument("--reason", required=True)
        parser.set_defaults(func=func)

    status = group.add_parser("status", help="policy in force, kill switch, activation history")
    status.set_defaults(func=cmd_status)

    qa = group.add_parser("qa", help="automation error rate from QA samples (Wilson 95%% CI)")
    qa.set_defaults(func=cmd_qa)
