"""Before acting: the records an execution relies on must be in the sealed log, unchanged.

A case is executed on the strength of its final verdict (or the resolution of its conflict),
the reviewer opinions behind it (two distinct ones for four-eyes), the policy activation in
force and the kill switch. An insider with write access to the database could forge or edit
any of those rows (a forged first opinion, a rewritten approver, a deleted halt row). So the
execution stage first seals the run's new inputs (`seal_inputs`, a seal limited to these
tables), then compares each relied-on row with the chain: its digest must be the one logged
under a signed checkpoint for its key, an insert-once key must hold no other logged content,
and no logged activation or halt of the domain may be missing from its table. A case whose
records fail is refused (not executed, reported with the table, key and entry); a tampered
activation or halt refuses the whole domain's execution (`ExecutionRefused`).

What this does not prove on its own: that a row inserted before its first seal was genuine
(a row forged between intake and the seal is sealed like any other). Rows are authenticated
at intake by their signatures (docs/identity.md); this check proves they did not change or
vanish afterwards. The entries are read from the log text, not from `audit_log_index` (a
cache); the chain's own integrity is `hitl audit verify`'s job (docs/audit.md, threat model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from hitl_gate.audit.chain import sha256_function
from hitl_gate.audit.events import SOURCES_BY_TYPE, EventSource, source_sql
from hitl_gate.audit.seal import (
    BATCH_ROWS,
    SEAL_MEMORY_LIMIT,
    STEP_OWNED,
    OwnedKeys,
    SealResult,
    seal_run,
)
from hitl_gate.audit.witness import WitnessConfig

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CASE_INPUTS = ("verdict", "verdict_opinion", "conflict_resolved")  # per case executed
DOMAIN_INPUTS = ("policy_activation", "automation_halt")  # the state the whole domain acts on
RELIED_ON: tuple[EventSource, ...] = tuple(
    SOURCES_BY_TYPE[t] for t in (*CASE_INPUTS, *DOMAIN_INPUTS)
) + (SOURCES_BY_TYPE["verdict_file_received"],)  # sealed with them (the opinions' files)
EXECUTED: tuple[EventSource, ...] = (
    SOURCES_BY_TYPE["execution"],
    SOURCES_BY_TYPE["adverse_action"],
)
SEALED = "execution_sealed_inputs"
# How a case-level key names its case: (key prefix given the domain, separator, part number).
CASE_OF_KEY = {
    "verdict": ("{domain}/", "/", 2),
    "verdict_opinion": ("{domain}/", "/", 2),
    "conflict_resolved": ("conflict:{domain}:", ":", 3),
}


class ExecutionRefused(RuntimeError):
    """The domain's activation or halt records differ from the sealed log: nothing executes."""


@dataclass
class SealCheck:
    """Cases refused (case id -> reason naming table, key and entry) and domain-wide problems."""

    refused: dict[str, str] = field(default_factory=dict)
    domain_problems: list[str] = field(default_factory=list)


def check_sealed_inputs(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    case_ids: list[str],
    reviewed: list[str] | None = None,
) -> SealCheck:
    """Compare the rows `case_ids` and the domain rely on with the sealed log (module doc).

    `reviewed`: the cases among them executed on a reviewer's verdict, which must have one.
    """
    check = SealCheck()
    _load_sealed(con)
    try:
        if reviewed:
            missing = con.execute(
                "SELECT c FROM unnest($cases::VARCHAR[]) t(c) WHERE c NOT IN "
                "(SELECT case_id FROM verdicts WHERE domain = $domain) ORDER BY c",
                {"cases": reviewed, "domain": domain},
            ).fetchall()
            for (case_id,) in missing:
                check.refused[case_id] = (
                    f"verdicts {domain}/{case_id}: no verdict recorded, yet the case would be "
                    "executed as decided by a reviewer"
                )
        with sha256_function(con):
            for source in RELIED_ON:
                if source.event_type in CASE_INPUTS:
                    for case_id, message in _problems(con, source, domain, case_ids):
                        check.refused.setdefault(case_id, message)
                elif source.event_type in DOMAIN_INPUTS:
                    check.domain_problems += [m for _, m in _problems(con, source, domain, None)]
    finally:
        con.execute(f"DROP TABLE IF EXISTS {SEALED}")
    return check


def _load_sealed(con: duckdb.DuckDBPyConnection) -> None:
    """The logged entries of the relied-on types under a signed checkpoint, from the log text.

    Selected by the envelope's last member (`"type":"..."}`: the writer sorts the keys, so
    `type` closes every envelope) before any JSON is parsed.
    """
    suffixes = {f"s{i}": f'"type":"{t}"}}' for i, t in enumerate((*CASE_INPUTS, *DOMAIN_INPUTS))}
    typed = " OR ".join(f"ends_with(entry, ${name})" for name in suffixes)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {SEALED} AS
        SELECT seq, e[1] AS event_type, e[2] AS entity_key, e[3] AS content_digest
        FROM (
            SELECT seq, json_extract_string(substr(entry, 66), ['$.type', '$.key', '$.digest'])
                AS e
            FROM audit_log
            WHERE seq <= (SELECT coalesce(max(last_seq), 0) FROM audit_checkpoints)
              AND ({typed})
        )
        """,
        suffixes,
    )


def _problems(
    con: duckdb.DuckDBPyConnection, source: EventSource, domain: str, case_ids: list[str] | None
) -> list[tuple[str, str]]:
    """(case id, message) of each relied-on row not sealed as it is, or sealed and deleted."""
    sql = source_sql(con, source)
    if sql is None:
        return []
    scope = "domain = $domain" + (
        " AND case_id IN (SELECT unnest($cases::VARCHAR[]))" if case_ids is not None else ""
    )
    case = "case_id" if case_ids is not None else "NULL"
    params: dict[str, object] = {"domain": domain, "event_type": source.event_type}
    if case_ids is not None:
        params["cases"] = case_ids
    rows = f"""(SELECT {case} AS case_id, {sql.entity_key} AS entity_key,
                       {sql.content_digest} AS content_digest FROM {sql.table} WHERE {scope})"""
    logged = f"(SELECT * FROM {SEALED} WHERE event_type = $event_type)"
    found = con.execute(
        f"""
        SELECT r.case_id, r.entity_key, r.content_digest,
               bool_or(l.content_digest = r.content_digest) AS sealed,
               min(l.seq) FILTER (WHERE l.content_digest <> r.content_digest) AS other_seq
        FROM {rows} r LEFT JOIN {logged} l ON l.entity_key = r.entity_key
        GROUP BY ALL ORDER BY r.entity_key
        """,
        params,
    ).fetchall()
    problems: list[tuple[str, str]] = []
    for case_id, key, digest, sealed, other_seq in found:
        where = f"{source.table} {key}"
        if other_seq is not None and (source.append_only or not sealed):
            problems.append((case_id, f"{where}: differs from the sealed entry seq {other_seq} "
                             f"(row digest {digest[:16]}): changed after sealing"))  # fmt: skip
        elif not sealed:
            problems.append(
                (
                    case_id,
                    f"{where}: not in the sealed audit log (row digest "
                    f"{digest[:16]}): unsealed, or inserted outside the pipeline",
                )
            )
    # A sealed record of the domain (or of the cases) must still be in its table.
    prefix, separator, part = CASE_OF_KEY.get(source.event_type, ("{domain}/", "/", 0))
    mine = "starts_with(l.entity_key, $prefix)" + (
        " AND split_part(l.entity_key, $separator, $part) IN (SELECT unnest($cases::VARCHAR[]))"
        if case_ids is not None
        else ""
    )
    extra: dict[str, object] = {"prefix": prefix.format(domain=domain)}
    if case_ids is not None:
        extra.update(separator=separator, part=part)
    gone = con.execute(
        f"""
        SELECT {"split_part(l.entity_key, $separator, $part)" if case_ids is not None else "''"},
               l.entity_key, min(l.seq)
        FROM {logged} l
        WHERE {mine} AND l.entity_key NOT IN (SELECT entity_key FROM {rows})
        GROUP BY ALL ORDER BY 3
        """,
        {**params, **extra},
    ).fetchall()
    problems += [
        (case_id, f"{source.table} {key}: sealed at entry seq {seq} but deleted from the table")
        for case_id, key, seq in gone
    ]
    return problems


def input_sealer(
    signing_key: Ed25519PrivateKey,
    checkpoint_dir: Path,
    witness: WitnessConfig | None,
    run_id: str,
    memory_limit: str | None = SEAL_MEMORY_LIMIT,
    batch_rows: int = BATCH_ROWS,
) -> Callable[[duckdb.DuckDBPyConnection], SealResult]:
    """The execution stage's seal of `RELIED_ON` (run id `<run>:inputs`), for `execute_days`.

    Verdicts and opinions are step-owned (intake seals its own): this seal logs none, so one
    that intake did not seal stays unsealed and its case is refused below."""

    def seal(con: duckdb.DuckDBPyConnection) -> SealResult:
        return seal_run(
            con, f"{run_id}:inputs", signing_key, checkpoint_dir, RELIED_ON, batch_rows,
            memory_limit=memory_limit, witness=witness, owned=STEP_OWNED,
        )  # fmt: skip

    return seal


def output_sealer(
    signing_key: Ed25519PrivateKey,
    checkpoint_dir: Path,
    witness: WitnessConfig | None,
    run_id: str,
    memory_limit: str | None = SEAL_MEMORY_LIMIT,
    batch_rows: int = BATCH_ROWS,
) -> Callable[[duckdb.DuckDBPyConnection, OwnedKeys], SealResult]:
    """The execution stage's seal of the `executions` and `adverse_actions` rows it wrote (run
    id `<run>:executed`), on the connection that wrote them, for `execute_days`: only the
    given entity keys (`domain/case_id`: texts, an Arrow string array, or the step's own
    `step_keys.StepKeys.owns`, asked per sealed slice) may be logged, in both tables."""

    def seal(con: duckdb.DuckDBPyConnection, keys: OwnedKeys) -> SealResult:
        mine = (
            keys
            if isinstance(keys, pa.Array) or callable(keys)
            else pa.array(list(keys), pa.string())
        )
        return seal_run(
            con, f"{run_id}:executed", signing_key, checkpoint_dir, EXECUTED, batch_rows,
            memory_limit=memory_limit, witness=witness,
            owned={"execution": mine, "adverse_action": mine},
        )  # fmt: skip

    return seal
