"""The tamper corpus: insider actions on a real sealed home, each with the detection expected.

Every case is run as the insider of docs/audit.md's threat model: write access to the
database and the home (SQL on `audit.duckdb`, files under the home), the real signing key
where the case says so, but no write access to the witness folder. Each case names who
detects it (`verify`, the seal, or execution's sealed-input check) and the message, which
must name the table (or log), the key and the entry. A case that stopped being detected
fails here; so does one whose tampering no longer changes anything (`control`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from hitl_gate.audit.events import SOURCES_BY_TYPE, source_sql
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import SealRefused, seal_run
from hitl_gate.audit.verify import VerifyReport, verify_audit
from hitl_gate.core.database import audit_connection
from hitl_gate.execution.sealed_inputs import check_sealed_inputs
from tests.fixed_place import put_back
from tests.unit.audit.tamper_home import DOMAIN, TamperHome, add_row, tamper_home_at

# An exhaustive corpus (49 attacks, a sealed home verified for each), like the verdict corpus:
# in `make test` and CI, not in the one-minute `make test-fast`.
pytestmark = pytest.mark.slow

Mutation = Callable[[TamperHome, duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True)
class Case:
    """One insider action and where it must be caught."""

    name: str
    mutate: Mutation
    expect: tuple[str, ...]  # substrings of the detection message (table, key, entry)
    by: str = "verify"  # verify | seal (then verify too) | execution
    witness: bool = True  # verify compares with the witness (False: shows the witness is needed)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> TamperHome:
    return tamper_home_at(tmp_path_factory.mktemp("tamper") / "t")


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each test's copy of the template is put back (`tests.fixed_place`: one audit
    file path for the module, so one kept DuckDB instance instead of one per test)."""
    return tmp_path_factory.mktemp("tamper-place") / "home"


def _seq_of(con: duckdb.DuckDBPyConnection, event_type: str, key: str) -> int:
    return int(
        con.execute(
            "SELECT min(seq) FROM audit_log_index WHERE event_type = ? AND entity_key = ?",
            [event_type, key],
        ).fetchall()[0][0]
    )


def sql(*statements: str) -> Mutation:
    def mutate(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
        for statement in statements:
            con.execute(statement)

    return mutate


def then_seal(first: Mutation) -> Mutation:
    """The edit, then the seal an operator (or the next daily run) would run."""

    def mutate(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
        first(home, con)
        home.seal(con, "after-edit")

    return mutate


def _forget_cache(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM audit_log_index WHERE event_type = 'execution'")
    con.execute("DELETE FROM audit_seen_rows WHERE event_type = 'execution'")


def edit_forget_cache_then_seal(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """Launder an edit: clear the caches the seal reads, so it logs the new content."""
    con.execute("UPDATE executions SET action = 'decline' WHERE case_id = 'C4'")
    _forget_cache(home, con)
    seal_run(con, "launder", home.key(), home.checkpoints)  # no witness: insider's own seal


def _digest_now(con: duckdb.DuckDBPyConnection, event_type: str, key: str) -> str:
    """The content digest the row of `key` has now (what a forger writes into the cache)."""
    source = SOURCES_BY_TYPE[event_type]
    expr = source_sql(con, source, sha256="sha256")
    assert expr is not None
    return str(
        con.execute(
            f"SELECT {expr.content_digest} FROM {expr.table} WHERE {expr.entity_key} = ?", [key]
        ).fetchall()[0][0]
    )


def forged_index(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """Edit a row and put its new digest in the cache, so the seal believes it logged it."""
    con.execute("UPDATE executions SET action = 'decline' WHERE case_id = 'C5'")
    con.execute(
        "UPDATE audit_log_index SET content_digest = ? WHERE entity_key = 'demo/C5'",
        [_digest_now(con, "execution", "demo/C5")],
    )
    assert seal_run(con, "forged", home.key(), home.checkpoints).appended == 0


def forged_index_then_seal(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """Remove the logged digest from the cache and seal: the edit is logged a second time."""
    con.execute("UPDATE verdicts SET verdict = 'decline' WHERE case_id = 'C2'")
    con.execute(
        "DELETE FROM audit_log_index WHERE event_type = 'verdict' AND entity_key = 'demo/C2'"
    )
    con.execute("DELETE FROM audit_seen_rows WHERE event_type = 'verdict'")
    assert seal_run(con, "forged", home.key(), home.checkpoints).appended == 1


def forged_seen_rows(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """Edit a row and mark its new fingerprint as seen, so the seal skips it."""
    con.execute("UPDATE adverse_actions SET decided_by = 'nobody' WHERE case_id = 'C2'")
    expr = source_sql(con, SOURCES_BY_TYPE["adverse_action"], sha256="sha256")
    assert expr is not None
    con.execute(
        f"INSERT INTO audit_seen_rows SELECT 'adverse_action', {expr.fingerprint} FROM {expr.table}"
    )
    assert seal_run(con, "skipped", home.key(), home.checkpoints).appended == 0


def _rechain_from(con: duckdb.DuckDBPyConnection, seq: int) -> None:
    """Recompute every entry from `seq` on, as an insider without the key would."""
    rows = con.execute("SELECT seq, entry FROM audit_log WHERE seq >= ? ORDER BY seq", [seq])
    entries = rows.fetchall()
    (prev,) = con.execute("SELECT entry_hash FROM audit_log WHERE seq = ?", [seq - 1]).fetchall()[0]
    for s, entry in entries:
        text = prev + entry[64:]
        prev = hashlib.sha256(text.encode()).hexdigest()
        con.execute("UPDATE audit_log SET entry = ?, entry_hash = ? WHERE seq = ?", [text, prev, s])


def recomputed_chain(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE audit_log SET entry = replace(entry, 'run-2', 'run-X') WHERE seq = 35")
    _rechain_from(con, 35)


def _drop_after(home: TamperHome, con: duckdb.DuckDBPyConnection, seq: int) -> None:
    """Delete the log after `seq` with its checkpoints, their files and the caches."""
    con.execute("DELETE FROM audit_log WHERE seq > ?", [seq])
    con.execute("DELETE FROM audit_log_index WHERE seq > ?", [seq])
    con.execute("DELETE FROM audit_checkpoints WHERE last_seq > ?", [seq])
    for path in home.checkpoints.glob("checkpoint-*.json"):
        if int(path.stem.split("-")[1]) > seq:
            path.unlink()


def tail_and_checkpoint_deleted(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """28 executions vanished in the issue: here the last run's three, with all their traces."""
    con.execute("DELETE FROM executions WHERE case_id IN ('C10', 'C11', 'C12')")
    con.execute("DELETE FROM audit_seen_rows WHERE event_type = 'execution'")
    _drop_after(home, con, 36)


def tail_of_two_runs_deleted(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM executions WHERE case_id NOT IN ('C1','C2','C3','C4','C5','C6')")
    con.execute("DELETE FROM audit_seen_rows WHERE event_type = 'execution'")
    _drop_after(home, con, 33)


def _rewrite_all(home: TamperHome, con: duckdb.DuckDBPyConnection, key_file: Path) -> None:
    """Wipe the log and its files, then seal the (edited) tables again with `key_file`'s key."""
    for table in ("audit_log", "audit_log_index", "audit_seen_rows", "audit_checkpoints",
                  "audit_runs"):  # fmt: skip
        con.execute(f"DELETE FROM {table}")
    for path in home.checkpoints.glob("*.json"):
        path.unlink()
    seal_run(con, "rewritten", load_or_create_signing_key(key_file), home.checkpoints)


def history_rewritten_real_key(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE executions SET action = 'decline' WHERE case_id = 'C1'")
    _rewrite_all(home, con, home.key_file)


def tail_rewritten_real_key(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """Only the last two runs rewritten (an execution changed) and re-signed with the real key."""
    con.execute("UPDATE executions SET action = 'approve' WHERE case_id = 'C8'")
    con.execute("DELETE FROM audit_seen_rows WHERE event_type = 'execution'")
    _drop_after(home, con, 33)
    seal_run(con, "rewritten-tail", home.key(), home.checkpoints)


def key_replaced_and_resigned(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE verdicts SET verdict = 'decline' WHERE case_id = 'C1'")
    home.key_file.unlink()
    _rewrite_all(home, con, home.key_file)  # a new key, created in the home


def witness_line_edited(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """The one case with witness access: its own line chain shows the edit."""
    lines = home.witness.file.read_text().splitlines()
    record = json.loads(lines[1])
    record["checkpoint"]["run_id"] = "run-Y"
    lines[1] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    home.witness.file.write_text("\n".join(lines) + "\n")


def checkpoint_and_file_edited(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE audit_checkpoints SET run_id = 'x' WHERE last_seq = 36")
    path = home.checkpoints / "checkpoint-000000000036.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "run_id": "x"}))


def forged_first_opinion(home: TamperHome, con: duckdb.DuckDBPyConnection) -> None:
    """Four-eyes case C5: a forged first opinion inserted after the inputs were sealed."""
    add_row(con, "verdict_opinions", 9, domain=DOMAIN, case_id="C5", reviewer_id="rev-x",
            stage="first", verdict="approve", four_eyes=True)  # fmt: skip


def move(table: str, where: str, setting: str) -> Mutation:
    return sql(f"UPDATE {table} SET {setting} WHERE {where}")


CASES: tuple[Case, ...] = (
    # --- insert-once rows edited, with and without the seal that used to launder them
    Case("execution edited", move("executions", "case_id = 'C3'", "action = 'decline'"),
         ("executions demo/C3: insert-once record changed after it was sealed: entry seq",)),
    Case("execution edited then sealed",
         then_seal(move("executions", "case_id = 'C3'", "action = 'decline'")),
         ("executions demo/C3: insert-once record changed after it was sealed (entry seq",),
         by="seal"),
    Case("verdict edited then sealed",
         then_seal(move("verdicts", "case_id = 'C1'", "verdict = 'decline'")),
         ("verdicts demo/C1: insert-once record changed after it was sealed (entry seq",),
         by="seal"),
    Case("edit laundered by clearing the caches, then sealing", edit_forget_cache_then_seal,
         ("executions demo/C4: insert-once record logged with 2 different contents (entries "
          "seq",)),
    Case("forged cache: edited row's digest added to audit_log_index", forged_index,
         ("executions demo/C5: insert-once record changed after it was sealed: entry seq",)),
    Case("forged cache: logged digest replaced, then sealed", forged_index_then_seal,
         ("verdicts demo/C2: insert-once record logged with 2 different contents",)),
    Case("forged seen-rows cache hides an edit from the seal", forged_seen_rows,
         ("adverse_actions demo/C2: insert-once record changed after it was sealed: entry seq",)),
    # --- each newly sealed table, edited
    Case("opinion edited", move("verdict_opinions", "reviewer_id = 'rev-b'", "verdict = 'decline'"),
         ("verdict_opinions demo/C1/rev-b: insert-once record changed after it was sealed",)),
    Case("opinion's reviewer rewritten",
         move("verdict_opinions", "reviewer_id = 'rev-a' AND case_id = 'C2'",
              "reviewer_id = 'rev-z'"),
         ("verdict_opinions demo/C2/rev-a: insert-once record logged at entry seq",
          "verdict_opinions demo/C2/rev-z: not in the audit log")),
    Case("activation approver rewritten",
         move("policy_activations", "seq = 2", "approved_by = 'mallory'"),
         ("policy_activations demo/2: insert-once record changed after it was sealed: entry seq",)),
    Case("halt row edited (halt turned into resume)",
         move("automation_halts", "seq = 1", "halted = false"),
         ("automation_halts demo/1: insert-once record changed after it was sealed: entry seq",)),
    Case("halt row deleted", sql("DELETE FROM automation_halts WHERE seq = 2"),
         ("automation_halts demo/2: insert-once record logged at entry seq",
          "was deleted from its table")),
    Case("model promotion rewritten", move("model_promotions", "alias = 'champion'",
                                           "promoted_by = 'mallory'"),
         ("model_promotions pd/champion/2026-01-02T10:00:00.000000Z: insert-once record changed",
          "entry seq")),
    Case("shadow policy edited", move("policy_shadows", "seq = 1", "actor = 'mallory'"),
         ("policy_shadows demo/1: insert-once record changed after it was sealed",)),
    Case("conflict resolution edited",
         move("conflict_resolutions", "case_id = 'C3'", "verdict = 'approve'"),
         ("conflict_resolutions conflict:demo:C3: insert-once record changed after it was "
          "sealed",)),
    Case("retention action deleted", sql("DELETE FROM retention_actions"),
         ("retention_actions demo/landing_file//x/a.csv: insert-once record logged at entry "
          "seq",)),
    Case("escalation export deleted", sql("DELETE FROM escalation_batch_cases"),
         ("escalation_batch_cases sla_breach:demo:C4: insert-once record logged at entry seq",)),
    Case("batch closure edited", move("review_batch_closures", "batch_id = 'B1'", "reason = 'x'"),
         ("review_batch_closures B1: insert-once record changed after it was sealed",)),
    Case("verdict file record edited", move("verdict_files", "true", "rows_accepted = 99"),
         (f"verdict_files {'f' * 64}: insert-once record changed after it was sealed",)),
    Case("reversal request deleted", sql("DELETE FROM reversal_requests"),
         ("reversal_requests demo/C3: insert-once record logged at entry seq",)),
    Case("escalation (versioned) edited outside a version",
         move("review_escalations", "true", "escalate_to = 'nowhere'"),
         ("review_escalations sla_breach:demo:C4: content matches no logged version (latest: "
          "entry seq",)),
    Case("decision (versioned) edited", move("decisions", "case_id = 'C6'", "pd = 0.01"),
         ("decisions demo/C6: content matches no logged version (latest: entry seq",)),
    Case("quarantined value (versioned) edited", move("quarantine", "true", "value = '99'"),
         ("quarantine demo/", "content matches no logged version")),
    Case("forged opinion inserted", forged_first_opinion,
         ("verdict_opinions demo/C5/rev-x: not in the audit log",)),
    # --- the log itself
    Case("entry edited", sql("UPDATE audit_log SET entry = replace(entry, 'run-1', 'run-X') "
                             "WHERE seq = 5"),
         ("first broken entry: seq 5: entry hash does not match its content",)),
    Case("entry deleted", sql("DELETE FROM audit_log WHERE seq = 20"),
         ("first broken entry: seq 21: sequence number out of place",)),
    Case("chain recomputed after an edit, without the key", recomputed_chain,
         ("checkpoint 36: head hash differs",)),
    Case("checkpoint row edited",
         sql("UPDATE audit_checkpoints SET run_id = 'x' WHERE last_seq = 36"),
         ("first broken entry: seq 36: checkpoint 36: file and database differ",)),
    Case("checkpoint row and its file edited alike", checkpoint_and_file_edited,
         ("checkpoint 36: bad signature", "checkpoint 36 differs from the one witnessed "
          "(run_id)")),
    Case("checkpoint row deleted, its file kept",
         sql("DELETE FROM audit_checkpoints WHERE last_seq = 39"),
         ("checkpoint file for seq 39 has no database row",)),
    # --- what only the witness catches
    Case("tail and its checkpoint deleted together (no witness: passes)",
         tail_and_checkpoint_deleted, (), witness=False),
    Case("tail and its checkpoint deleted together", tail_and_checkpoint_deleted,
         ("witnessed checkpoint 39", "is missing: the log ends before it")),
    Case("two runs' tail deleted with their checkpoints", tail_of_two_runs_deleted,
         ("witnessed checkpoint 36", "witnessed checkpoint 39", "the log ends before it")),
    Case("history rewritten and re-signed with the real key", history_rewritten_real_key,
         ("witnessed checkpoint 33", "the database lacks it")),
    Case("tail rewritten and re-signed with the real key", tail_rewritten_real_key,
         ("witnessed checkpoint 36",
          "checkpoint 39 differs from the one witnessed (first_seq, head_hash")),
    Case("key replaced in the home, history re-signed", key_replaced_and_resigned,
         ("signed by another key", "witnessed checkpoint 33")),
    Case("witness line edited", witness_line_edited,
         ("home-witness/checkpoints.jsonl line 3 (checkpoint 39): does not follow the line "
          "before it",)),
    # --- execution refuses what it relies on when it differs from the sealed log
    Case("forged first opinion for a four-eyes case", forged_first_opinion,
         ("C5", "verdict_opinions demo/C5/rev-x: not in the sealed audit log"), by="execution"),
    Case("verdict edited before execution",
         move("verdicts", "case_id = 'C2'", "verdict = 'decline'"),
         ("C2", "verdicts demo/C2: differs from the sealed entry seq"), by="execution"),
    Case("conflict resolution edited before execution",
         move("conflict_resolutions", "case_id = 'C3'", "verdict = 'approve'"),
         ("C3", "conflict_resolutions conflict:demo:C3: differs from the sealed entry seq"),
         by="execution"),
    Case("second opinion of a four-eyes case deleted before execution",
         sql("DELETE FROM verdict_opinions WHERE case_id = 'C1' AND reviewer_id = 'rev-b'"),
         ("C1", "verdict_opinions demo/C1/rev-b: sealed at entry seq", "deleted from the table"),
         by="execution"),
    Case("conflict resolution deleted before execution (reverts the verdict)",
         sql("DELETE FROM conflict_resolutions"),
         ("C3", "conflict_resolutions conflict:demo:C3: sealed at entry seq"), by="execution"),
    Case("activation approver rewritten before execution",
         move("policy_activations", "seq = 2", "approved_by = 'mallory'"),
         ("domain", "policy_activations demo/2: differs from the sealed entry seq"),
         by="execution"),
    Case("halt row deleted before execution (kill switch lifted)",
         sql("DELETE FROM automation_halts WHERE seq = 2", "UPDATE automation_halts SET halted "
             "= false WHERE seq = 1"),
         ("domain", "automation_halts demo/2: sealed at entry seq",
          "automation_halts demo/1: differs from the sealed entry seq"), by="execution"),
)  # fmt: skip


def _report(home: TamperHome, con: duckdb.DuckDBPyConnection, witness: bool = True) -> VerifyReport:
    return verify_audit(
        con, home.checkpoints, public_key_hex(load_or_create_signing_key(home.root / "pinned")),
        witness=home.witness.folder if witness else None,
    )  # fmt: skip


def _verify(home: TamperHome, con: duckdb.DuckDBPyConnection, witness: bool = True) -> str:
    """The report's text, prefixed BROKEN or OK by `report.ok` (not by the summary's wording)."""
    report = _report(home, con, witness)
    return ("OK\n" if report.ok else "BROKEN\n") + report.summary()


@pytest.fixture(scope="module")
def pinned(template: TamperHome) -> str:
    """The public key the auditor pins: the real one, kept outside the home."""
    (template.root / "pinned").write_bytes(template.key_file.read_bytes())
    return public_key_hex(load_or_create_signing_key(template.root / "pinned"))


def test_the_untouched_home_verifies(template: TamperHome, pinned: str, place: Path) -> None:
    home = TamperHome(put_back(template.root, place))
    with audit_connection(home.db) as con:
        assert _report(home, con).ok, _verify(home, con)
        assert not check_sealed_inputs(con, DOMAIN, ["C1", "C2", "C3", "C5"]).refused
        con.execute("DELETE FROM audit_log_index")  # a cache: losing it proves nothing
        con.execute("DELETE FROM audit_seen_rows")
        assert _report(home, con).ok, _verify(home, con)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.name + c.by for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.by}: {c.name}" for c in CASES])
def test_tampering_is_detected(case: Case, template: TamperHome, pinned: str, place: Path) -> None:
    home = TamperHome(put_back(template.root, place))
    with audit_connection(home.db) as con:
        if case.by == "seal":
            with pytest.raises(SealRefused) as refused:
                case.mutate(home, con)
            message = str(refused.value)
            assert "hitl audit seal" not in message and "run `" not in message
            for part in case.expect:
                assert part in message, message
            assert not _report(home, con).ok
            return
        case.mutate(home, con)
        if case.by == "execution":
            check = check_sealed_inputs(con, DOMAIN, ["C1", "C2", "C3", "C5"])
            text = (
                "\n".join(check.domain_problems)
                if "domain" in case.expect
                else "\n".join(f"{k}: {v}" for k, v in check.refused.items())
            )
            for part in case.expect:
                if part != "domain":
                    assert part in text, text
            return
        summary = _verify(home, con, case.witness)
    if not case.expect:  # the control: without the witness this insider wins
        assert summary.startswith("OK\n"), summary
        return
    assert summary.startswith("BROKEN\n"), summary
    for part in case.expect:
        assert part in summary, summary


# The registry and assignment tables (issue 17) as main creates them, for branches without them.
REGISTRY_DDL = (
    "CREATE TABLE IF NOT EXISTS people_acts (seq BIGINT PRIMARY KEY, act_id VARCHAR NOT NULL "
    "UNIQUE, kind VARCHAR NOT NULL, person_id VARCHAR NOT NULL, payload VARCHAR NOT NULL, "
    "signature VARCHAR NOT NULL, signer_fingerprint VARCHAR NOT NULL, signer_id VARCHAR NOT "
    "NULL, recorded_at TIMESTAMPTZ NOT NULL)",
    "CREATE TABLE IF NOT EXISTS review_assignments (batch_id VARCHAR NOT NULL, seq BIGINT NOT "
    "NULL, domain VARCHAR NOT NULL, queue VARCHAR NOT NULL, assignee_id VARCHAR NOT NULL, "
    "opinion_slot INTEGER NOT NULL, assigned_by VARCHAR NOT NULL, signer_fingerprint VARCHAR, "
    "signature VARCHAR, reason VARCHAR, recorded_at TIMESTAMPTZ NOT NULL, "
    "PRIMARY KEY (batch_id, seq))",
)


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ("UPDATE people_acts SET person_id = 'mallory' WHERE seq = 2",
         "people_acts 2: insert-once record changed after it was sealed"),
        ("DELETE FROM people_acts WHERE seq = 2",
         "people_acts 2: insert-once record logged at entry seq"),
        ("UPDATE review_assignments SET assignee_id = 'mallory'",
         "review_assignments B1/1: insert-once record changed after it was sealed"),
    ],
)  # fmt: skip
def test_registry_and_assignments_are_sealed_insert_once(
    mutation: str, expected: str, template: TamperHome, pinned: str, place: Path
) -> None:
    home = TamperHome(put_back(template.root, place))
    with audit_connection(home.db) as con:
        for ddl in REGISTRY_DDL:
            con.execute(ddl)
        for seq in (1, 2):
            add_row(con, "people_acts", seq, seq=seq, kind="add_person")
        add_row(con, "review_assignments", 1, batch_id="B1", seq=1, domain=DOMAIN)
        assert home.seal(con, "registry").appended == 3
        assert _report(home, con).ok, _verify(home, con).split("\n")[0]
        con.execute(mutation)
        summary = _verify(home, con)
    assert summary.startswith("BROKEN\n") and expected in summary, summary
    assert "another key" not in summary
