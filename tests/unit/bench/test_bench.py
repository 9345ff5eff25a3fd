"""The benchmark tooling: the synthetic generator, step timing and the report, plus the
review workbook's styles (changed for speed: the styles reviewers see must not change)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest
from openpyxl import load_workbook

from bench.generate import calibration_frame, synthesise, write_day
from bench.measure import stage_name, step_durations
from bench.memory import peaks_per_step
from bench.pipeline import SECTION, append_report
from hitl_gate.core.domain import load_domain
from hitl_gate.ingest.landing import discover_landing_files, ingest_files
from hitl_gate.review.export.workbook import write_review_workbook

DAY = date(2018, 4, 2)


@pytest.fixture(scope="module")
def domain():
    return load_domain("consumer_credit")


def test_generator_is_seeded_and_contract_shaped(domain) -> None:
    first = synthesise(domain, 5_000, DAY, seed=7)
    again = synthesise(domain, 5_000, DAY, seed=7)
    other = synthesise(domain, 5_000, DAY, seed=8)
    assert first.equals(again)
    assert not first.equals(other)
    assert first.columns == [*domain.contract.columns, domain.model.label.column]
    assert first[domain.case_id].is_unique().all()
    assert first[domain.event_time].dt.date().unique().to_list() == [DAY]


def test_generator_keeps_null_rates_means_and_correlations(domain) -> None:
    sample = calibration_frame(domain)
    synthetic = synthesise(domain, 200_000, DAY, seed=1)
    for name in ("emp_length", "months_since_last_delinq", "annual_income_joint"):
        expected = sample[name].null_count() / sample.height
        assert synthetic[name].null_count() / synthetic.height == pytest.approx(expected, abs=0.01)
    for name in ("annual_income", "loan_amount", "interest_rate", "delinq_2y"):
        assert synthetic[name].mean() == pytest.approx(sample[name].mean(), rel=0.05)
    pair = pl.corr("loan_amount", "installment")
    assert synthetic.select(pair).item() == pytest.approx(sample.select(pair).item(), abs=0.03)


def test_generated_day_passes_the_contract_in_chunks(tmp_path, domain) -> None:
    written = write_day(domain, tmp_path, 12_000, DAY, rows_per_file=5_000)
    assert len(written.application_files) == 3
    files = discover_landing_files(tmp_path, domain.landing_subdir, DAY)
    result = ingest_files(files, domain.contract, domain.case_id)
    assert result.accepted.height == 12_000
    assert result.quarantine.height == 0
    outcomes = pl.read_csv(written.outcomes_file)
    assert outcomes.height == 12_000


def test_step_durations_come_from_dagster_step_events() -> None:
    from dagster import DagsterInstance, asset, materialize

    @asset
    def tiny() -> int:
        return 1

    with DagsterInstance.ephemeral() as instance:
        result = materialize([tiny], instance=instance)
        durations = step_durations(instance.all_logs(result.run_id))
    assert set(durations) == {"tiny"}
    assert durations["tiny"] >= 0
    assert stage_name("consumer_credit__risk_scores") == "risk_scores"


def test_report_appends_inside_its_section(tmp_path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\n## Other\n\nkeep\n", encoding="utf-8")
    append_report("first\n", report)
    append_report("second\n", report)
    report.write_text(report.read_text() + "\n## Later\n\nafter\n", encoding="utf-8")
    append_report("third\n", report)
    text = report.read_text()
    assert text.count(SECTION) == 1
    assert text.index("first") < text.index("second") < text.index("third") < text.index("Later")
    assert "keep" in text and "after" in text


def test_review_workbook_styles_per_column(tmp_path) -> None:
    header = ["batch_id", "case", "amount", "verdict", "comment"]
    rows = [{"batch_id": "b", "case": f"c{i}", "amount": i * 1.5} for i in range(3)]
    path = tmp_path / "cases.xlsx"
    write_review_workbook(
        path,
        header=header,
        rows=rows,
        answer_columns=["verdict", "comment"],
        choices={"verdict": ["approve", "decline"]},
        instructions=[("what", "review")],
        created_at=datetime(2018, 4, 2, tzinfo=UTC),
    )
    sheet = load_workbook(path)["cases"]
    assert all(cell.font.b for cell in sheet[1])
    assert all(cell.fill.fill_type is None for cell in sheet[1])
    for row in sheet.iter_rows(min_row=2):
        for name, cell in zip(header, row, strict=True):
            answer = name in ("verdict", "comment")
            assert cell.protection.locked is not answer
            assert cell.fill.fgColor.rgb == ("00FFF2CC" if answer else "00EEEEEE")
            assert not cell.font.b


def test_backfill_overlap_counts_runs_in_progress_at_once() -> None:
    from bench.backfill import RunSpan, max_overlap

    day = date(2018, 1, 1)

    def span(start: float, end: float, pid: int) -> RunSpan:
        return RunSpan(day, day, start, end, pid, True)

    serial = [span(0, 1, 1), span(1, 2, 1), span(2, 3, 1)]
    parallel = [span(0, 2, 1), span(1, 3, 2), span(2.5, 4, 1)]
    assert max_overlap(serial) == 1  # one ending as the next starts is not overlap
    assert max_overlap(parallel) == 2


def test_rss_samples_are_attributed_to_the_step_running_at_the_time() -> None:
    samples = [(0.0, 100.0), (1.0, 900.0), (2.0, 300.0), (3.0, 500.0), (4.0, 50.0)]
    windows = {"d__routed_decisions": (2.5, 3.5), "d__validated_cases": (0.5, 2.0)}
    peaks = peaks_per_step(samples, windows)
    assert list(peaks) == ["validated_cases", "routed_decisions"]  # in the order they ran
    assert peaks["validated_cases"] == (1.5, 900.0)
    assert peaks["routed_decisions"] == (1.0, 500.0)


def test_step_cpu_reads_the_cpu_clock_across_each_steps_window() -> None:
    from bench.measure import cpu_at, step_cpu

    clock = [(0.0, 1.0), (1.0, 1.5), (2.0, 3.5), (3.0, 3.5), (4.0, 4.0)]
    assert cpu_at(clock, 1.5) == pytest.approx(2.5)  # halfway between two samples
    assert cpu_at(clock, -1.0) == 1.0 and cpu_at(clock, 9.0) == 4.0  # clamped to the span
    windows = {"d__routed_decisions": (2.0, 4.0), "d__validated_cases": (0.5, 2.0)}
    spent = step_cpu([*clock[1:], clock[0]], windows)  # a sample appended out of order
    assert list(spent) == ["validated_cases", "routed_decisions"]
    assert spent["validated_cases"] == pytest.approx(3.5 - 1.25)
    assert spent["routed_decisions"] == pytest.approx(0.5)
    assert step_cpu([], windows) == {}


def test_a_jobs_cpu_is_attributed_to_the_step_that_spent_it() -> None:
    """A real in-process Dagster run: a step that computes gets its CPU seconds, a step that
    sleeps as long gets almost none, and the steps together spend no more than the run."""
    import time

    from dagster import DagsterInstance, asset, materialize

    from bench.measure import cpu_seconds, step_cpu, step_windows
    from bench.memory import RssSampler

    @asset
    def busy() -> int:
        started, n = time.process_time(), 0
        while time.process_time() - started < 0.6:
            n += 1
        return n

    @asset(deps=[busy])
    def idle() -> None:
        time.sleep(0.6)

    clock = RssSampler().start()
    before = cpu_seconds()
    with DagsterInstance.ephemeral() as instance:
        result = materialize([busy, idle], instance=instance)
        spent_run = cpu_seconds() - before
        clock.stop()
        spent = step_cpu(clock.cpu, step_windows(instance.all_logs(result.run_id)))
    assert list(spent) == ["busy", "idle"]
    assert spent["busy"] == pytest.approx(0.6, abs=0.25)
    assert spent["idle"] < 0.2
    assert sum(spent.values()) <= spent_run + 0.05


def test_the_report_names_each_steps_cpu_per_repeat() -> None:
    from bench.measure import RunFigures
    from bench.pipeline import MODES, markdown, summarise

    def run(mode: str, cpu: float, stage_cpu: dict[str, float]) -> RunFigures:
        return RunFigures(mode, 10, cpu, cpu, 100.0, {"a": 1.0, "b": 1.0}, stage_cpu)

    runs = {mode: [run(mode, 5.0, {})] * 3 for mode in MODES}
    runs["pipeline"] = [
        run("pipeline", 10.0, {"a": 6.0, "b": 3.0}),
        run("pipeline", 10.5, {"a": 6.2, "b": 3.1}),
        run("pipeline", 14.0, {"a": 6.1, "b": 6.9}),
    ]
    summary = summarise(10, runs)
    assert summary["stage_cpu_runs"] == {"a": [6.0, 6.2, 6.1], "b": [3.0, 3.1, 6.9]}
    text = markdown([summary], "")
    assert "| b | 3.0 / 3.1 / 6.9 |" in text  # the step that grew, repeat by repeat
    assert "| (outside steps) | 1.0 / 1.2 / 1.0 |" in text
