"""One case's full path through the layer, read from the audit database (read-only).

Feature provenance: the decision row names the feature service and a digest of the values;
the values themselves are read back from the stored `case_features` partition (the Parquet
file the scoring step consumed) and re-digested, so the trace shows whether they still match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from hitl_gate.audit.run_seal import reading_session
from hitl_gate.audit.run_segments import Segments
from hitl_gate.core.database import audit_connection, query_frame

CASE_FEATURES_STAGE = "case_features"
# Columns of a case_features file that are not feature values.
_FEATURE_META = {"event_timestamp", "partition_date", "feature_service", "feature_digest"}


def stored_feature_values(
    warehouse: Path, domain: str, case_id_column: str, case_id: str, day: Any
) -> dict[str, Any] | None:
    """The feature row `case_id` was scored on, from `<warehouse>/<domain>/case_features/<day>`.

    Returns the feature values (in file order) plus whether their digest, recomputed now with
    the same canonical form, equals the digest stored with them; None when the file or row is
    gone (e.g. a warehouse retention policy removed it).
    """
    from hitl_gate.core.digests import row_digests

    path = warehouse / domain / CASE_FEATURES_STAGE / f"{day}.parquet"
    if not path.is_file():
        return None
    scan = pl.scan_parquet(path)
    if case_id_column not in scan.collect_schema().names():
        return None  # a file of another contract: never guess which column holds the id
    row = scan.filter(pl.col(case_id_column) == case_id).collect()
    if row.height == 0:
        return None
    names = [c for c in row.columns if c != case_id_column and c not in _FEATURE_META]
    stored = row["feature_digest"][0] if "feature_digest" in row.columns else None
    return {
        "file": str(path),
        "values": row.select(names).row(0, named=True),
        "digest_matches": stored is not None and row_digests(row, names)[0] == stored,
    }


def _table_exists(con: Any, name: str) -> bool:
    tables = query_frame(
        con,
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND table_name = ?",
        [name],
    )
    return tables.height > 0


def case_domains(audit_db: Path, case_id: str) -> list[str]:
    """Every domain that decided or quarantined `case_id`, sorted.

    Case ids are unique within a domain only (two domains may both have a case `17`), so a
    caller holding only an id must check this list before tracing: more than one domain is
    ambiguous and needs the domain named.
    """
    with audit_connection(audit_db, read_only=True) as con:
        found = query_frame(
            con,
            "SELECT domain FROM decisions WHERE case_id = ? "
            "UNION SELECT domain FROM quarantine WHERE case_id = ? ORDER BY domain",
            [case_id, case_id],
        )
    return [str(name) for name in found["domain"].to_list()]


def trace_case(
    audit_db: Path,
    case_id: str,
    domain: str,
    warehouse: Path | None = None,
    case_id_column: str | None = None,
    segments: Segments | None = None,
) -> dict[str, Any] | None:
    """Everything `domain` recorded about `case_id`: decision lineage or, if rejected, its
    quarantine. Every table is read for that domain only, never another domain's same id.

    With `warehouse` and the domain's `case_id_column`, also the feature values it was scored
    on (see `stored_feature_values`). With `segments` (the home's per-run segments), the
    history lists what they sealed too, read from their files in place
    (`run_seal.reading_session`).
    """
    key = [domain, case_id]
    session = (
        reading_session(audit_db, segments)
        if segments is not None
        else audit_connection(audit_db, read_only=True)
    )
    with session as con:
        decided = query_frame(con, "SELECT * FROM case_trace WHERE domain = ? AND case_id = ?", key)
        quarantined = query_frame(
            con,
            "SELECT domain, partition_date, file_path, row_number, column_name, check_name, "
            "value, message FROM quarantine WHERE domain = ? AND case_id = ? "
            "ORDER BY row_number",
            key,
        )
        policy = query_frame(
            con,
            "SELECT p.policy_version, p.owner, p.effective_date FROM policy_versions p "
            "JOIN decisions d ON d.policy_digest = p.policy_digest "
            "WHERE d.domain = ? AND d.case_id = ?",
            key,
        )
        # A rejection row names its verdict file, the file its batch, the batch its domain;
        # a file whose batch is unknown (refused before it was read) is shown for every domain.
        rejected_verdicts = query_frame(
            con,
            "SELECT r.message FROM verdict_rejections r "
            "LEFT JOIN verdict_files f ON f.file_sha256 = r.file_sha256 "
            "LEFT JOIN review_batches b ON b.batch_id = f.batch_id "
            "WHERE r.case_id = ? AND (b.domain IS NULL OR b.domain = ?)",
            [case_id, domain],
        )
        history = _case_history(con, key)
        shadow = (
            query_frame(
                con,
                "SELECT challenger_version, challenger_pd, challenger_band FROM shadow_scores "
                "WHERE domain = ? AND case_id = ?",
                key,
            )
            if _table_exists(con, "shadow_scores")
            else pl.DataFrame()
        )
    if decided.height == 0 and quarantined.height == 0:
        return None
    decision = decided.row(0, named=True) if decided.height else None
    features = None
    if decision and warehouse is not None and case_id_column:
        features = stored_feature_values(
            warehouse, domain, case_id_column, case_id, decision["partition_date"]
        )
    return {
        "features": features,
        "shadow": shadow.row(0, named=True) if shadow.height else None,
        "decision": decision,
        "policy": policy.row(0, named=True) if policy.height else None,
        "quarantine": quarantined.to_dicts(),
        "rejected_verdicts": rejected_verdicts["message"].to_list(),
        "history": history.to_dicts(),
    }


def _case_history(con: Any, key: list[str]) -> pl.DataFrame:
    """The case's sealed events (`case_history`: the single chain and every folded per-run
    segment), by when they were sealed; `segment_id` None for the single chain (a database
    made before segments has no such column: all single chain)."""
    columns = query_frame(
        con,
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = "
        "current_database() AND table_name = 'case_history'",
    )["column_name"].to_list()
    if not columns:
        return pl.DataFrame()
    segment = "segment_id" if "segment_id" in columns else "NULL::VARCHAR AS segment_id"
    return query_frame(
        con,
        f"SELECT recorded_at, event_type, run_id, seq, {segment}, content_digest "
        "FROM case_history WHERE domain = ? AND case_id = ? ORDER BY recorded_at, seq",
        key,
    )


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
        features = trace.get("features")
        if features:
            match = "matches" if features["digest_matches"] else "DOES NOT MATCH"
            lines.append(f"\nFeature values ({features['file']}; digest {match})")
            lines += [f"  {k:<22} {_show(v)}" for k, v in features["values"].items()]
        if trace.get("shadow"):
            s = trace["shadow"]
            lines.append(
                f"\nShadow (challenger v{s['challenger_version']}, not acted on): "
                f"pd {_show(s['challenger_pd'])}, band {s['challenger_band']}"
            )
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
    if trace.get("history"):
        lines.append("\nAudit log (the case's sealed events)")
        for event in trace["history"]:
            chain = f"segment {event['segment_id']}" if event["segment_id"] else "the single chain"
            lines.append(
                f"  {event['recorded_at']}  {event['event_type']:<22} {event['run_id']}  "
                f"entry {event['seq']} of {chain}, digest {str(event['content_digest'])[:16]}"
            )
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)
