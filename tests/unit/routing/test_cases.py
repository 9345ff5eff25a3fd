"""Case assembly: inputs, features and scores joined per case, in the validated order."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from hitl_gate.routing.cases import assemble_cases, assemble_slice
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
