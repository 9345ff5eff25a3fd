"""What the Dagster UI shows: rounded numbers and Markdown tables, table schemas and row counts,
owners and code references, partitions bounded by the data window, links it can open, the runs'
code location origin, and `make ui` following HITL_HOME."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, MarkdownMetadataValue, TableSchema, build_output_context
from pydantic import ValidationError

from assets.common import markdown_metadata, markdown_table, readable_number, rounded
from assets.partitions import daily_partitions
from hitl_gate.core.domain import PROJECT_ROOT, DataWindow, load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings, SettingsError
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import build_resources


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.12345678901234567, 0.1235),
        (1234567.891, 1234568),
        (2.0, 2),
        (0.000123456, 0.0001235),
        (-45.678912, -45.68),
        (float("inf"), float("inf")),
    ],
)
def test_numbers_keep_four_significant_digits(value: float, shown: float) -> None:
    assert readable_number(value) == shown
    assert type(readable_number(value)) is type(shown)


def test_markdown_tables_are_markdown_metadata_with_rounded_cells() -> None:
    frame = pl.DataFrame({"route": ["a|b", "c"], "share": [1 / 3, 2 / 3], "n": [1, 2]})
    text = markdown_table(frame)
    assert text.splitlines()[:3] == [
        "| route | share | n |",
        "|---|---|---|",
        "| a\\|b | 0.3333 | 1 |",
    ]
    value = markdown_metadata(frame)
    assert isinstance(value, MarkdownMetadataValue) and value.md_str == text
    assert rounded({"rate": 0.1 + 0.2, "n": 3, "s": "x"}) == {"rate": 0.3, "n": 3, "s": "x"}


def test_stored_frames_report_their_row_count_and_column_schema(tmp_path: Path) -> None:
    manager = PolarsParquetIOManager(base_dir=str(tmp_path))
    context = build_output_context(asset_key=AssetKey(["d", "stage"]))
    frame = pl.DataFrame({"case_id": ["a", "b", "c"], "pd": [0.1, 0.2, None]})
    manager.handle_output(context, frame)
    metadata = context.get_logged_metadata()
    assert metadata["dagster/row_count"].value == 3
    schema = metadata["dagster/column_schema"].schema
    assert isinstance(schema, TableSchema)
    assert [(c.name, c.type) for c in schema.columns] == [("case_id", "String"), ("pd", "Float64")]


@pytest.mark.slow
def test_a_range_reports_the_schema_once_on_its_last_day(tmp_path: Path) -> None:
    """Every day's materialisation has the row count; the schema rides on the range's last day
    (the asset's latest materialisation, which the UI shows) and on a one-day run's day."""
    from dagster import (
        BackfillPolicy,
        DagsterInstance,
        DailyPartitionsDefinition,
        asset,
        materialize,
    )
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    days = DailyPartitionsDefinition(start_date="2018-01-01", end_date="2018-01-10")

    @asset(partitions_def=days, backfill_policy=BackfillPolicy.single_run())
    def stage(context) -> pl.DataFrame:  # noqa: ANN001 - Dagster's asset context
        keys = context.partition_keys
        return pl.DataFrame({"partition_date": [date.fromisoformat(k) for k in keys]})

    resources = {"io_manager": PolarsParquetIOManager(base_dir=str(tmp_path))}
    with DagsterInstance.ephemeral() as instance:
        ranged = {ASSET_PARTITION_RANGE_START_TAG: "2018-01-02",
                  ASSET_PARTITION_RANGE_END_TAG: "2018-01-04"}  # fmt: skip
        assert materialize([stage], instance=instance, resources=resources, tags=ranged).success
        assert materialize(
            [stage], instance=instance, resources=resources, partition_key="2018-01-06"
        ).success
        events = instance.fetch_materializations(AssetKey("stage"), limit=10).records
        metadata = {e.partition_key: e.asset_materialization.metadata for e in events}
    assert sorted(metadata) == ["2018-01-02", "2018-01-03", "2018-01-04", "2018-01-06"]
    assert {day: m["dagster/row_count"].value for day, m in metadata.items()} == {
        "2018-01-02": 3, "2018-01-03": 3, "2018-01-04": 3, "2018-01-06": 1,
    }  # fmt: skip
    with_schema = sorted(day for day, m in metadata.items() if "dagster/column_schema" in m)
    assert with_schema == ["2018-01-04", "2018-01-06"]
    for day in with_schema:
        columns = metadata[day]["dagster/column_schema"].schema.columns
        assert [(c.name, c.type) for c in columns] == [("partition_date", "Date")]


def test_assets_carry_their_owner_and_code_reference() -> None:
    from pipelines.definitions import build_definitions

    domain = load_domain("consumer_credit")
    defs = build_definitions(HitlSettings(paths=HitlPaths.at("/nonexistent")), [domain])
    node = defs.resolve_asset_graph().get(AssetKey([domain.name, "routed_decisions"]))
    assert node.owners == [domain.features.owner]
    references = node.metadata["dagster/code_references"].code_references
    assert references and Path(references[0].file_path).is_file()


def test_partitions_are_the_declared_data_window() -> None:
    for name, first, last in (
        ("consumer_credit", "2018-01-01", "2018-03-31"),  # 90 days
        ("lending_club", "2016-01-01", "2016-03-31"),  # 91: a leap year
    ):
        keys = daily_partitions(load_domain(name)).get_partition_keys()
        days = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
        assert (keys[0], keys[-1], len(keys)) == (first, last, days), name
    live = load_domain("consumer_credit").model_copy(
        update={"data_window": DataWindow(start=date(2024, 1, 1))}
    )
    assert daily_partitions(live).get_partition_keys()[-1] >= "2025-01-01"  # open: up to today


def test_a_reversed_data_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="is before data_window.start"):
        DataWindow(start=date(2018, 3, 1), end=date(2018, 2, 1))
    window = DataWindow(start=date(2018, 1, 1), end=date(2018, 1, 31))
    assert window.contains(date(2018, 1, 31)) and not window.contains(date(2018, 2, 1))


def test_links_are_urls_only_when_a_server_is_configured(tmp_path: Path) -> None:
    plain = build_resources(HitlSettings(paths=HitlPaths.at(tmp_path)))["observability"]
    assert plain.report_url("d", tmp_path / "r.html") is None
    assert plain.model_version_url("m", 3) is None
    settings = HitlSettings.from_environ(
        {"HITL_REPORTS_URL": "http://127.0.0.1:8765/", "HITL_MLFLOW_UI_URL": "http://ml:5000"},
        home=tmp_path,
    )
    served = build_resources(settings)["observability"]
    assert served.report_url("d", tmp_path / "r 1.html") == "http://127.0.0.1:8765/d/r%201.html"
    assert (
        served.model_version_url("pd model", 3) == "http://ml:5000/#/models/pd%20model/versions/3"
    )
    assert HitlSettings.from_environ(settings.to_environ()) == settings
    with pytest.raises(SettingsError, match="HITL_REPORTS_URL"):
        HitlSettings.from_environ({"HITL_REPORTS_URL": "file:///tmp/reports"})


def test_runs_carry_the_workspace_code_location_origin() -> None:
    from hitl_gate.app.origin import job_origin

    origin = job_origin("consumer_credit_daily")
    # What the webserver's job page filters runs by (`.dagster/repository`).
    assert origin.repository_origin.get_label() == "__repository__@pipelines.definitions:defs"
    assert origin.job_name == "consumer_credit_daily"


def test_make_ui_follows_hitl_home(tmp_path: Path) -> None:
    def dry_run(*args: str) -> str:
        done = subprocess.run(
            ["make", "-n", "-s", "ui", *args], cwd=PROJECT_ROOT, capture_output=True, text=True
        )
        return done.stdout

    home = tmp_path / "home"
    assert f"DAGSTER_HOME={home}/dagster HITL_HOME={home} " in dry_run(f"HITL_HOME={home}")
    assert f"DAGSTER_HOME={PROJECT_ROOT}/.hitl/dagster " in dry_run("HITL_HOME=")
