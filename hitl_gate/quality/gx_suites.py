"""The declared expectation suites run by Great Expectations' SQL engine, inside DuckDB.

Each suite of `domains/<name>/expectations.yaml` becomes a GE `ExpectationSuite` (the file
uses GE's own expectation names) validated through a GE SQL datasource on the DuckDB file of
`expectation_batches.py`, whose views read the warehouse Parquet in place: GE compiles every
metric to SQL that DuckDB runs next to the data, instead of pulling rows into pandas (about
10 s per million rows here). GE has no expectation for "row count against the trailing days",
so that one is prepared as data and validated by GE as a plain column expectation: DuckDB
fills one row per checked day with its row count and ratio to the trailing median, and GE
checks the ratio with `expect_column_values_to_be_between` (days without history are NULL and,
as in GE everywhere, nulls are not counted against the expectation).

The GE project lives in `<home>/gx/` (suites, validation results) and its Data Docs site is the
home's `data_docs/` folder; a process keeps the GE context and its Data Docs site builder open
between checks while the project file is unchanged (`gx_projects.py`). `great_expectations` takes
seconds to import: only the functions that run a suite import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from hitl_gate.core.domain import DomainConfig
from hitl_gate.quality.data_docs import strip_remote_assets, write_index
from hitl_gate.quality.expectation_batches import (
    StageViews,
    database_path,
    engine_kwargs,
    prepare_stage,
)
from hitl_gate.quality.expectations import (
    TRAILING,
    Expectation,
    Outcome,
    Suite,
    load_expectations,
    outcomes_frame,
)
from hitl_gate.quality.gx_projects import OPEN_PROJECTS, GxProject

if TYPE_CHECKING:
    from great_expectations.data_context.store.store import DataDocsSiteConfigTypedDict

SITE_NAME = "hitl_data_docs"
LOCK_FILE = "expectations.lock"  # beside the DuckDB file: one validation at a time
# GE's own index is not built by the checks (`data_docs.write_index` writes a static one); this
# bounds it when someone builds it by hand, since GE re-reads every stored result for it.
INDEX_LIMIT = 300
_RESULT_KEYS = ("element_count", "unexpected_count", "unexpected_percent", "observed_value")


@dataclass(frozen=True)
class GxLocations:
    """Where the GE project, its Data Docs and the warehouse it validates are."""

    project_root: Path  # GE writes its project into `<project_root>/gx/`
    data_docs: Path
    warehouse: Path
    lock_wait_s: float = 600.0  # how long a validation waits for another process's turn


@dataclass(frozen=True)
class SuiteRun:
    """Outcomes in declaration order, whether GE passed the suite, and the Data Docs pages."""

    outcomes: list[Outcome]
    success: bool
    pages: list[Path]
    index: Path

    def table(self) -> pl.DataFrame:
        """The outcomes as a table: label, success, observed, unexpected counts."""
        return outcomes_frame(self.outcomes)

    @property
    def failed(self) -> list[str]:
        """Labels of the expectations that did not hold, in declaration order."""
        return [o.label for o in self.outcomes if not o.success]

    @property
    def first_page(self) -> Path:
        """The Data Docs page to open first: this run's first page, else the site index."""
        return self.pages[0] if self.pages else self.index


def _gx_expectation(e: Expectation, position: int) -> Any:
    """The GE expectation for a declared one; `meta` keeps its place and label for reporting."""
    import great_expectations.expectations as gxe

    meta = {"position": position, "label": e.label}
    if e.expectation == TRAILING:
        return gxe.ExpectColumnValuesToBeBetween(
            column="ratio_to_trailing_median",
            min_value=e.min_ratio,
            max_value=e.max_ratio,
            meta=meta,
        )
    cls = {
        "expect_column_values_to_not_be_null": gxe.ExpectColumnValuesToNotBeNull,
        "expect_column_values_to_be_between": gxe.ExpectColumnValuesToBeBetween,
        "expect_column_values_to_be_in_set": gxe.ExpectColumnValuesToBeInSet,
        "expect_column_mean_to_be_between": gxe.ExpectColumnMeanToBeBetween,
        "expect_table_row_count_to_be_between": gxe.ExpectTableRowCountToBeBetween,
    }[e.expectation]
    kwargs = e.model_dump(include={"column", "min_value", "max_value", "value_set"})
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if e.expectation.startswith("expect_column_values"):
        kwargs["mostly"] = e.mostly
    return cls(**kwargs, meta=meta)


def _site(where: GxLocations) -> DataDocsSiteConfigTypedDict:
    """The Data Docs site GE builds into: the home's `data_docs/` folder."""
    return {
        "class_name": "SiteBuilder",
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "validation_results_limit": INDEX_LIMIT,
        },
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(where.data_docs),
        },
    }


def _observed(e: Expectation, result: dict, error: str | None) -> str:
    if error:
        return f"GE could not evaluate it: {error}"
    if e.expectation == "expect_table_row_count_to_be_between":
        return f"{result.get('observed_value', 0):,} rows"
    if e.expectation == "expect_column_mean_to_be_between":
        mean = result.get("observed_value")
        return "no values" if mean is None else f"mean {mean:,.4g}"
    what = "days" if e.expectation == TRAILING else "values"
    considered = (result.get("element_count") or 0) - (result.get("missing_count") or 0)
    return f"{result.get('unexpected_count') or 0:,} of {considered:,} {what} unexpected"


def _outcome(e: Expectation, res: Any) -> Outcome:
    info = res.exception_info or {}
    raised = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    if info.get("raised_exception"):
        raised.append(info)
    error = str(raised[0].get("exception_message")) if raised else None
    result = dict(res.result or {})
    unexpected = result.get("unexpected_count")
    percent = result.get("unexpected_percent")
    return Outcome(
        label=e.label,
        success=bool(res.success) and error is None,
        observed=_observed(e, result, error),
        unexpected=None if unexpected is None else int(unexpected),
        unexpected_percent=None if percent is None else round(float(percent), 4),
    )


def _release(datasource: Any, *definitions: Any) -> None:
    """Close GE's pooled DuckDB connections so other processes can open the file again: the
    datasource's, and those of the datasource each validation definition reaches."""
    sources = [datasource, *(d.batch_definition.data_asset.datasource for d in definitions)]
    engines = {}
    for source in sources:
        execution_engine = getattr(source, "_execution_engine", None)
        for engine in (getattr(source, "_engine", None), getattr(execution_engine, "engine", None)):
            if engine is not None:
                engines[id(engine)] = engine
    for engine in engines.values():
        engine.dispose()


def _datasource(context: Any, name: str, connection_string: str, kwargs: dict) -> Any:
    """The GE datasource on the DuckDB file, reused as stored (each save rewrites the YAML)."""
    if name in context.data_sources.all():
        stored = context.data_sources.get(name)
        if str(stored.connection_string) == connection_string and stored.kwargs == kwargs:
            return stored
    return context.data_sources.add_or_update_sql(
        name=name, connection_string=connection_string, kwargs=kwargs
    )


def _batch_definition(datasource: Any, table: str) -> Any:
    """The whole-table batch of a view: the view itself holds only the checked days."""
    try:
        asset = datasource.get_asset(table)
    except LookupError:
        asset = datasource.add_table_asset(name=table, table_name=table)
    try:
        return asset.get_batch_definition("checked_days")
    except KeyError:
        return asset.add_batch_definition_whole_table("checked_days")


@dataclass
class KeptDefinition:
    """A validation definition this process stored, and what it was made from.

    Storing one (`validation_definitions.add_or_update`) rewrites the suite with new expectation
    ids, the batch definition and the definition itself, and reads each back: about a sixth of a
    suite's CPU, for the same suite on every run. It is reused while the declared expectations,
    the batch definition object and both stored files (`stored`, the bytes written) are
    unchanged; an edited expectations file, another process's store of the same suite or a
    removed `gx/` folder makes the next run store it again.
    """

    declared: tuple[str, list[tuple[int, Expectation]]]  # table, expectations by position
    batch_definition: Any
    definition: Any
    stored: tuple[bytes | None, bytes | None]


def _stored_files(gx_dir: Path, suite_name: str) -> tuple[bytes | None, bytes | None]:
    """The stored suite and validation definition of `suite_name`, as bytes (None if absent).

    GE's file stores keep a suite at `expectations/<name's dotted parts>.json` and a validation
    definition at `validation_definitions/<name>.json` (`data_docs.read_suites` reads the first).
    """
    suite = gx_dir / "expectations" / Path(*suite_name.split(".")).with_suffix(".json")
    definition = gx_dir / "validation_definitions" / f"{suite_name}.json"
    return _read_bytes(suite), _read_bytes(definition)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _definition(
    project: GxProject,
    datasource: Any,
    suite_name: str,
    table: str,
    expectations: list[tuple[int, Expectation]],
) -> tuple[Any, bool]:
    """The validation definition of the suite on `table`; True if it was (re)stored just now."""
    import great_expectations as gx

    context = project.context
    gx_dir = Path(context.root_directory)
    batch_definition = _batch_definition(datasource, table)
    declared = (table, expectations)
    kept = project.definitions.get(suite_name)
    if (
        kept is not None
        and kept.declared == declared
        and kept.batch_definition is batch_definition
        and None not in kept.stored
        and _stored_files(gx_dir, suite_name) == kept.stored
    ):
        return kept.definition, False
    suite = gx.ExpectationSuite(
        name=suite_name, expectations=[_gx_expectation(e, i) for i, e in expectations]
    )
    # Stores the suite too (GE adds or updates a validation definition's suite with it).
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
    )
    project.definitions[suite_name] = KeptDefinition(
        declared, batch_definition, definition, _stored_files(gx_dir, suite_name)
    )
    return definition, True


def _validate(
    project: GxProject,
    datasource: Any,
    suite_name: str,
    table: str,
    expectations: list[tuple[int, Expectation]],
    run_id: Any,
) -> tuple[list[tuple[int, Outcome]], Any, bool]:
    """One GE validation of `table` (whole table); outcomes keyed by declared position, the
    result's identifier, and whether the suite was stored anew (its page is then rebuilt)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    definition, stored = _definition(project, datasource, suite_name, table, expectations)
    result = definition.run(run_id=run_id, result_format="BASIC")
    by_position = dict(expectations)
    outcomes = [
        (
            res.expectation_config.meta["position"],
            _outcome(by_position[res.expectation_config.meta["position"]], res),
        )
        for res in result.results
    ]
    identifier = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
        run_id=run_id,
        batch_identifier=result.batch_id,
    )
    return outcomes, identifier, stored


def _prepare(
    datasource: Any,
    where: GxLocations,
    domain: str,
    stage: str,
    days: Sequence[date],
    trailing_days: int | None,
) -> StageViews:
    """The stage's views, prepared on the pooled connection GE's queries then use: the DuckDB
    file is opened (and checkpointed on close) once per check, not once more for this."""
    pooled = datasource.get_execution_engine().engine.raw_connection()
    try:
        connection = pooled.driver_connection
        return prepare_stage(where.warehouse, domain, stage, days, trailing_days, connection)
    finally:
        pooled.close()  # back to the pool, for GE's queries


@contextmanager
def _validation_turn(where: GxLocations) -> Iterator[None]:
    """Hold the warehouse's validation lock for the block, across processes.

    One validation at a time per warehouse: the DuckDB file takes one writer, its
    `checked_days` table says which days the views show, and GE's project files and Data Docs
    index are rewritten by every validation. Runs of different days at once (a backfill with
    a run per partition) therefore take turns on a lock file beside the DuckDB file, for the
    second or so a validation takes; past `lock_wait_s` the check fails naming the lock file.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(where.warehouse / LOCK_FILE))
    try:
        lock.acquire(timeout=where.lock_wait_s)
    except Timeout as exc:
        raise TimeoutError(
            f"waited {where.lock_wait_s:.0f} s for {lock.lock_file}: another run kept "
            "validating expectations in this warehouse"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _build_pages(
    project: GxProject, where: GxLocations, identifiers: list[Any], stored: set[str]
) -> list[Path]:
    """Build the run's result pages, its suites' pages, self-contained, then the index.

    A suite's page shows the stored suite only: it is rebuilt when the suite was stored by this
    run (`stored`) or the page is missing, else left as built from the same stored suite.
    GE's own index is not built: it is drawn by scripts from CDNs and re-reads every stored
    result; `data_docs.write_index` writes a static one instead (`hitl_gate/quality/data_docs.py`).
    """
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    suites = [
        ExpectationSuiteIdentifier(name=name)
        for name in sorted({i.expectation_suite_identifier.name for i in identifiers})
    ]
    suites = [s for s in suites if s.name in stored or not project.has_page(s)]
    pages = project.build_pages([*identifiers, *suites])
    for page in pages:
        strip_remote_assets(page, where.data_docs)
    write_index(where.data_docs, Path(project.context.root_directory))
    return pages[: len(identifiers)]


def run_suite(
    where: GxLocations,
    domain: str,
    stage: str,
    suite: Suite,
    days: Sequence[date],
    run_name: str,
) -> SuiteRun:
    """Validate the stage's rows on `days` with GE on DuckDB; build their Data Docs pages.

    Runs while holding the warehouse's validation turn (`_validation_turn`).
    """
    from great_expectations.core.run_identifier import RunIdentifier

    from hitl_gate.quality.gx_dialect import register

    trailing = [(i, e) for i, e in enumerate(suite.expectations) if e.expectation == TRAILING]
    direct = [(i, e) for i, e in enumerate(suite.expectations) if e.expectation != TRAILING]
    with _validation_turn(where):
        with OPEN_PROJECTS.using(where.project_root, SITE_NAME, _site(where)) as project:
            context = project.context
            datasource = _datasource(
                context,
                f"{domain}_warehouse",
                f"{register()}:///{database_path(where.warehouse)}",
                engine_kwargs(where.warehouse),
            )
            run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
            outcomes, identifiers, stored, names = [], [], set(), []
            try:
                window = trailing[0][1].days if trailing else None
                views = _prepare(datasource, where, domain, stage, days, window)
                for table, part in ((views.checked, direct), (views.row_counts, trailing)):
                    if not part:
                        continue
                    name = f"{domain}.{stage}" + ("" if table == views.checked else ".row_counts")
                    names.append(name)
                    got, identifier, new = _validate(project, datasource, name, table, part, run_id)
                    outcomes += got
                    identifiers.append(identifier)
                    if new:
                        stored.add(name)
            finally:
                kept = [project.definitions[n] for n in names if n in project.definitions]
                _release(datasource, *(k.definition for k in kept))
            pages = _build_pages(project, where, identifiers, stored)
        ordered = [o for _, o in sorted(outcomes, key=lambda pair: pair[0])]
        return SuiteRun(
            outcomes=ordered,
            success=all(o.success for o in ordered),
            pages=pages,
            index=where.data_docs / "index.html",
        )


def run_declared_suite(
    where: GxLocations,
    domain: DomainConfig,
    stage: str,
    days: Sequence[date],
    run_name: str,
) -> SuiteRun:
    """Run `stage`'s suite as the domain's expectations file declares it now, on `days`.

    The file is read at run time, so an edited threshold applies from the next run on.
    """
    if domain.expectations is None:
        raise ValueError(f"{domain.name} declares no expectations file")
    suite = load_expectations(domain.source_dir / domain.expectations).suites[stage]
    return run_suite(where, domain.name, stage, suite, days, run_name)
