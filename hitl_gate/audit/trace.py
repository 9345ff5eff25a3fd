"""One case's full path through the layer, read from the audit database (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hitl_gate.audit.store import audit_connection, query_frame


def trace_case(audit_db: Path, case_id: str) -> dict[str, Any] | None:
    """Everything recorded about `case_id`: decision lineage or, if rejected, its quarantine."""
    with audit_connection(audit_db, read_only=True) as con:
        decided = query_frame(con, "SELECT * FROM case_trace WHERE case_id = ?", [case_id])
        quarantined = query_frame(
            con,
            "SELECT domain, partition_date, file_path, row_number, column_name, check_name, "
            "value, message FROM quarantine WHERE case_id = ? ORDER BY row_number",
            [case_id],
        )
        policy = query_frame(
            con,
            "SELECT p.policy_version, p.owner, p.effective_date FROM policy_versions p "
            "JOIN decisions d ON d.policy_digest = p.policy_digest WHERE d.case_id = ?",
            [case_id],
        )
        rejected_verdicts = query_frame(
            con, "SELECT message FROM verdict_rejections WHERE case_id = ?", [case_id]
        )
    if decided.height == 0 and quarantined.height == 0:
        return None
    return {
        "decision": decided.row(0, named=True) if decided.height else None,
        "policy": policy.row(0, named=True) if policy.height else None,
        "quarantine": quarantined.to_dicts(),
        "rejected_verdicts": rejected_verdicts["message"].to_list(),
    }


SECTIONS = (
    ("Input", ("domain", "partition_date", "event_time", "source_file", "source_sha256",
               "source_row", "contract_version")),
    ("Features", ("feature_service", "feature_digest")),
    ("Model", ("model_name", "model_version", "model_run_id", "pd", "score", "risk_band",
               "reason_codes")),
    ("Policy", ("policy_version", "policy_digest", "route", "route_rule_id",
                "route_reason_code", "rules_fired", "review_queue")),
    ("Review", ("batch_id", "verdict", "reviewer_id", "rationale", "verdict_received_at")),
    ("Execution", ("status", "executed_action", "decided_by", "executed_at",
                   "decision_run_id", "execution_run_id")),
)  # fmt: skip


def format_trace(trace: dict[str, Any]) -> str:
    """A plain-text report, one section per stage, for the terminal."""
    lines: list[str] = []
    decision = trace["decision"]
    if decision:
        lines.append(f"Case {decision['case_id']}")
        for title, fields in SECTIONS:
            lines.append(f"\n{title}")
            lines += [f"  {name:<22} {_show(decision.get(name))}" for name in fields]
        if trace["policy"]:
            p = trace["policy"]
            lines.append(f"  {'policy_owner':<22} {p['owner']} (effective {p['effective_date']})")
    for item in trace["quarantine"]:
        lines.append(
            f"\nQuarantined: {item['file_path']} row {item['row_number']} column "
            f"{item['column_name']} ({item['check_name']}): {item['message']}"
        )
    for message in trace["rejected_verdicts"]:
        lines.append(f"\nRejected verdict: {message}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)
