"""The decision frame: which route wins, what is recorded, and what stops routing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.routing.cases import assemble_cases
from hitl_gate.routing.decisions import (
    DECISION_COLUMNS,
    InvalidPolicy,
    decision_rows,
    raise_for_policy_errors,
    record_policy_version,
)
from policies.decide import decide
from tests.unit.routing import frames

NOW = datetime(2018, 3, 5, 12, tzinfo=UTC)


def _decided(
    tmp_path: Path, rows: list[tuple], *, halted: bool = False, **policy: object
) -> pl.DataFrame:
    cases = assemble_cases(frames.domain(), *frames.stages(rows))
    return decide(frames.policy(tmp_path, **policy), cases, "application_id", halted=halted)


def _by_case(decided: pl.DataFrame, column: str) -> dict[str, object]:
    return dict(zip(decided["application_id"], decided[column], strict=True))


def test_decline_beats_review_beats_approval(tmp_path: Path) -> None:
    decided = _decided(
        tmp_path,
        [
            ("all", frames.D1, 0.05, 50_000),  # large (review) and low risk (approve)
            ("decline", frames.D1, 0.7, 50_000),  # very high risk and large
            ("approve", frames.D1, 0.05, 1_000),
            ("default", frames.D1, 0.3, 1_000),  # no rule: the fail-safe default
        ],
    )
    assert _by_case(decided, "proposed_route") == {
        "all": "human_review", "decline": "auto_decline", "approve": "auto_approve",
        "default": "human_review",
    }  # fmt: skip
    assert _by_case(decided, "route_rule_id")["all"] == "REV-AMOUNT"
    assert _by_case(decided, "route_reason_code")["default"] == "H99"


def test_a_halt_sends_automatic_routes_to_review_and_keeps_the_policys_own(
    tmp_path: Path,
) -> None:
    rows = [
        ("approve", frames.D1, 0.05, 1_000),
        ("decline", frames.D1, 0.7, 1_000),
        ("review", frames.D1, 0.05, 50_000),
    ]
    decided = _decided(tmp_path, rows, halted=True, qa_sampling=None)
    assert set(decided["route"]) == {"human_review"}
    assert _by_case(decided, "proposed_route") == {
        "approve": "auto_approve", "decline": "auto_decline", "review": "human_review",
    }  # fmt: skip
    assert _by_case(decided, "route_override") == {
        "approve": "halt", "decline": "halt", "review": None,
    }  # fmt: skip
    assert _by_case(decided, "route_reason_code")["approve"] == "HALT"
    running = _decided(tmp_path, rows, qa_sampling=None)
    assert _by_case(running, "route")["approve"] == "auto_approve"


def test_a_qa_sample_is_recorded_as_such_even_while_halted(tmp_path: Path) -> None:
    rows = [("approve", frames.D1, 0.05, 1_000), ("decline", frames.D1, 0.7, 1_000)]
    decided = _decided(tmp_path, rows, halted=True)  # one per stratum: both are sampled
    assert _by_case(decided, "route") == {"approve": "human_review", "decline": "human_review"}
    assert _by_case(decided, "route_override") == {"approve": "qa_sample", "decline": "qa_sample"}
    assert decided["qa_sample"].all()


def test_decision_rows_are_the_audit_columns_of_each_case_once(tmp_path: Path) -> None:
    decided = _decided(tmp_path, frames.day_of_cases(12))
    carried = decided.head(2).with_columns(pl.lit(frames.D1).alias("carried_from"))
    rows = decision_rows(frames.domain(), pl.concat([decided, carried]), "run-1", NOW)
    assert rows.columns == DECISION_COLUMNS
    assert rows.height == 12, "carried copies are not decisions of their own"
    assert rows["case_id"].to_list() == decided["application_id"].to_list()
    assert set(rows["run_id"]) == {"run-1"} and set(rows["domain"]) == {"consumer_credit"}
    assert rows["source_file"].to_list() == ["day.csv"] * 12


def test_decision_rows_of_a_slice_in_misaligned_chunks_are_its_columns_not_a_copy(
    tmp_path: Path,
) -> None:
    """A routed slice's columns come from several stages, cut into chunks at different rows:
    its decision rows are those columns themselves (the same memory), equal to the rows of
    the same cases in one chunk; a `select` would have copied them to align the chunks."""
    decided = _decided(tmp_path, frames.day_of_cases(12)).rechunk()
    cut = pl.concat([decided.head(5), decided.slice(5)], rechunk=False)
    half = decided.columns[: len(decided.columns) // 2]
    routed = cut.select(half).hstack(decided.drop(half).get_columns())
    assert len(set(routed.n_chunks("all"))) == 2, "columns cut at different rows"
    compat = pl.CompatLevel.newest()

    def memory(series: pl.Series) -> list[list[int]]:
        chunks = [c.to_arrow(compat_level=compat) for c in series.get_chunks()]
        return [[b.address for b in chunk.buffers() if b is not None] for chunk in chunks]

    taken = {"case_id": "application_id", "source_file": "_source_file", "route": "route"}
    before = {name: memory(routed.get_column(source)) for name, source in taken.items()}
    rows = decision_rows(frames.domain(), routed, "run-1", NOW)
    assert {name: memory(rows.get_column(name)) for name in taken} == before
    assert_frame_equal(rows, decision_rows(frames.domain(), decided, "run-1", NOW))


def test_decision_rows_fit_the_audit_table(tmp_path: Path) -> None:
    decided = _decided(tmp_path, frames.day_of_cases(5))
    with audit_connection(tmp_path / "audit.duckdb") as con:
        con.register("incoming", decision_rows(frames.domain(), decided, "r", NOW).to_arrow())
        con.execute("INSERT INTO decisions BY NAME SELECT * FROM incoming")
        policy = frames.policy(tmp_path)
        record_policy_version(con, frames.domain(), policy, NOW)
        record_policy_version(con, frames.domain(), policy, NOW)  # once per digest
        versions = query_frame(con, "SELECT policy_version FROM policy_versions")
        stored = query_frame(con, "SELECT count(*) AS n FROM decisions")
    assert versions["policy_version"].to_list() == ["unit-v1"]
    assert stored["n"].item() == 5


def test_decisions_reach_duckdb_without_a_copy_of_their_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`insert_decisions` hands DuckDB the Arrow string views Polars holds (no large-string
    copy of every text while the insert runs), and the stored rows are the frame's."""
    from contextlib import AbstractContextManager

    import pyarrow as pa

    from hitl_gate.routing import decisions

    given: list[pa.Schema] = []
    register = decisions.registered

    def recorded(con: object, name: str, data: pa.Table) -> AbstractContextManager[str]:
        given.append(data.schema)
        return register(con, name, data)  # type: ignore[arg-type]

    monkeypatch.setattr(decisions, "registered", recorded)
    rows = decision_rows(frames.domain(), _decided(tmp_path, frames.day_of_cases(7)), "r", NOW)
    with audit_connection(tmp_path / "audit.duckdb") as con:
        decisions.insert_decisions(con, rows)
        stored = query_frame(con, "SELECT * FROM decisions ORDER BY case_id")
    (schema,) = given
    assert schema.field("case_id").type == pa.string_view()
    assert schema.field("rules_fired").type == pa.large_list(pa.string_view())
    texts = [  # the text columns stored as text (the contract version is a number there)
        c
        for c, t in rows.schema.items()
        if t in (pl.String, pl.List(pl.String)) and stored[c].dtype == t
    ]
    assert len(texts) > 20 and stored.select(texts).equals(rows.sort("case_id").select(texts))


def test_a_policy_that_reads_a_missing_column_stops_routing(tmp_path: Path) -> None:
    broken = frames.policy(
        tmp_path,
        rules=[{"id": "X", "text": "t", "when": "no_such_column > 1",
                "outcome": "auto_decline", "reason_code": "D9"}],
    )  # fmt: skip
    cases = assemble_cases(frames.domain(), *frames.stages(frames.day_of_cases(4)))
    with pytest.raises(InvalidPolicy) as raised:
        raise_for_policy_errors(broken, cases)
    assert str(raised.value) == "policy unit-v1 is invalid and was not applied"
    assert any("no_such_column" in p for p in raised.value.problems)
