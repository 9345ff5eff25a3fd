"""Case assembly: inputs, features and scores joined per case, in the validated order."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.routing import cases as cases_module
from hitl_gate.routing.cases import assemble_cases, assemble_slice, unique_ids
from tests.unit.routing import frames


def test_features_come_from_feast_and_the_rest_from_the_validated_input() -> None:
    validated, features, scores = frames.stages(frames.day_of_cases(6))
    # The feature store's value is what the model saw: it wins over the validated column.
    features = features.with_columns(pl.lit(1.0).alias("annual_income"))
    cases = assemble_cases(frames.domain(), validated, features, scores)
    assert cases["application_id"].to_list() == validated["application_id"].to_list()
    assert cases["annual_income"].to_list() == [1.0] * 6
    assert cases.columns.count("partition_date") == 1
    assert {"loan_amount", "_source_file", "feature_service", "pd", "risk_band"} <= set(
        cases.columns
    )


def test_a_case_missing_from_a_stage_is_not_routed() -> None:
    validated, features, scores = frames.stages(frames.day_of_cases(6))
    cases = assemble_cases(frames.domain(), validated, features, scores.slice(1))
    assert cases["application_id"].to_list() == validated["application_id"].to_list()[1:]


def test_a_slice_is_the_same_rows_as_the_whole_join_even_when_stages_are_reordered() -> None:
    domain = frames.domain()
    validated, features, scores = frames.stages(frames.day_of_cases(20))
    whole = assemble_cases(domain, validated, features, scores)
    # Scores stored in another order (a partition re-run on its own): found by case id.
    scans = (validated.lazy(), features.lazy(), scores.reverse().lazy())
    parts = [assemble_slice(domain, scans, offset, 7) for offset in (0, 7, 14)]
    assert_frame_equal(pl.concat(parts), whole, check_exact=True)


def _joined(domain, validated, features, scores) -> pl.DataFrame:
    """The assembly as the inner joins on the case id it stands for (the reference)."""
    key = domain.case_id
    feature_cols = [c for c in features.columns if c != "partition_date"]
    inputs = validated.select([c for c in validated.columns if c not in feature_cols or c == key])
    return inputs.join(
        features.select(feature_cols), on=key, how="inner", maintain_order="left"
    ).join(scores.drop("partition_date"), on=key, how="inner", maintain_order="left")


def test_stages_in_the_validated_order_are_put_side_by_side_as_the_join_would() -> None:
    domain = frames.domain()
    validated, features, scores = frames.stages(frames.day_of_cases(30))
    assert_frame_equal(
        assemble_cases(domain, validated.lazy(), features.lazy(), scores.lazy()),
        _joined(domain, validated, features, scores),
        check_exact=True,
    )


def test_a_case_id_twice_is_joined_not_paired_row_by_row() -> None:
    """Aligned ids that are not unique: the join pairs each copy with each (the frame a
    side-by-side assembly would not give), so the assembly joins."""
    domain = frames.domain()
    validated, features, scores = frames.stages(frames.day_of_cases(5))
    twice = pl.col(domain.case_id).str.replace(r"\d$", "0")  # c000 .. c004 all read c000
    validated, features, scores = (f.with_columns(twice) for f in (validated, features, scores))
    cases = assemble_cases(domain, validated, features, scores)
    assert_frame_equal(cases, _joined(domain, validated, features, scores), check_exact=True)
    assert cases.height > validated.height


def test_ids_are_unique_by_their_hashes_and_a_collision_is_decided_by_the_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct hashes settle it without counting the texts; a repeated hash (here forced:
    every id hashed to 0) falls back to the exact count, so a repeated id is never accepted
    and distinct ids that collide are still unique."""
    counted: list[pl.DataType] = []
    n_unique = pl.Series.n_unique

    def recorded(self: pl.Series) -> int:
        counted.append(self.dtype)
        return n_unique(self)

    monkeypatch.setattr(pl.Series, "n_unique", recorded)
    distinct, repeated = pl.Series(["c1", "c2", "c3"]), pl.Series(["c1", "c2", "c1"])
    assert unique_ids(distinct) and pl.String not in counted
    assert not unique_ids(repeated)

    def collide(ids: pl.Series) -> pl.Series:
        return pl.Series([0] * ids.len(), dtype=pl.UInt64)

    monkeypatch.setattr(cases_module, "_id_hashes", collide)
    counted.clear()
    assert unique_ids(distinct) and pl.String in counted
    assert not unique_ids(repeated)
