"""End to end: the demo on the real sample in a temporary home, with every real component.

One module-scoped demo run (Dagster in process, Feast, MLflow, DuckDB, openpyxl) feeds the
tests below; they then exercise the CLI, the sensor, idempotency and bad input on that state.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from openpyxl import load_workbook

from hitl_gate.app.cli import main
from hitl_gate.audit.run_seal import reading_session
from hitl_gate.audit.run_segments import Segments
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.home import HitlPaths
from tests.e2e.landed import settled

pytestmark = pytest.mark.e2e

# Each shipped domain's sample: cases landed and days they span.
SAMPLES = {"consumer_credit": (10_000, 90), "lending_club": (9_857, 91)}
CREDIT = "consumer_credit"
COUNTED_TABLES = (
    "decisions",
    "verdicts",
    "executions",
    "review_batches",
    "verdict_files",
    "input_files",
    "audit_events",  # the entries of both chains: the single one and the runs' segments
)


def _counts(paths: HitlPaths) -> dict[str, int]:
    """Row counts; `audit_events` in a reading session lists the segments' entries too."""
    with reading_session(paths.audit_db, Segments(paths.segments_dir)) as con:
        return {t: int(scalar(con, f"SELECT count(*) FROM {t}")) for t in COUNTED_TABLES}


@pytest.mark.parametrize("domain", sorted(SAMPLES))
def test_every_sample_application_is_accounted_for(demo_home: HitlPaths, domain: str) -> None:
    size, span = SAMPLES[domain]
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        status = dict(
            query_frame(
                con, "SELECT status, cases FROM case_status_summary WHERE domain = ?", [domain]
            ).iter_rows()
        )
        unbalanced = scalar(
            con,
            "SELECT count(*) FROM partition_accounting WHERE domain = ? AND NOT balanced",
            [domain],
        )
        days = scalar(con, "SELECT count(*) FROM partition_accounting WHERE domain = ?", [domain])
        incomplete = scalar(
            con,
            "SELECT count(*) FROM decisions WHERE domain = ? AND (model_version IS NULL "
            "OR policy_digest IS NULL OR feature_digest IS NULL OR source_sha256 IS NULL "
            "OR source_row IS NULL)",
            [domain],
        )
    assert sum(status.values()) == size
    assert status["executed"] > 0 and status["pending_review"] > 0
    assert days == span and unbalanced == 0
    assert incomplete == 0


def test_both_domains_share_one_audit_database(demo_home: HitlPaths) -> None:
    """The audit views name each case's domain; ids, models and policies never mix."""
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        rows = query_frame(
            con,
            "SELECT domain, count(*) AS cases, min(case_id) AS first_id, "
            "list(DISTINCT model_name) AS models, list(DISTINCT policy_version) AS policies "
            "FROM case_trace GROUP BY domain ORDER BY domain",
        ).rows(named=True)
    assert [r["domain"] for r in rows] == sorted(SAMPLES)
    credit, lending = rows
    assert credit["first_id"].startswith("LC18Q1-") and lending["first_id"].startswith("LCMD-")
    assert credit["models"] == ["consumer_credit_pd"] and lending["models"] == ["lending_club_pd"]
    assert credit["policies"] == ["consumer_credit-v1"]
    assert lending["policies"] == ["lending_club-v1"]


def test_review_loop_closed_by_the_demo_reviewer(demo_home: HitlPaths) -> None:
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        verdicts = query_frame(con, "SELECT * FROM verdicts")
        by_reviewer = scalar(con, "SELECT count(*) FROM executions WHERE decided_by = 'reviewer'")
    assert verdicts.height > 0
    # Recorded as the signer (a labelled demo person), never a typed id.
    assert all(r.startswith("demo-") for r in verdicts["reviewer_id"])
    assert by_reviewer == verdicts.height
    assert not list((demo_home.review / "inbox").glob("*.xlsx")), "inbox not cleared"
    assert set(verdicts["domain"]) == set(SAMPLES), "one batch answered per domain"
    assert verdicts.group_by("domain").agg(pl.col("batch_id").n_unique())["batch_id"].max() == 1


# Per domain: input file, feature service (the champion version's), model, policy version.
TRACE_EXPECTED = {
    CREDIT: (
        "applications_2018-",
        "consumer_credit_pd_v1",
        "consumer_credit_pd",
        "consumer_credit-v1",
    ),
    "lending_club": (
        "loans_2016-",
        "lending_club_pd_v1",
        "lending_club_pd",
        "lending_club-v1",
    ),
}


@pytest.mark.parametrize("domain", sorted(TRACE_EXPECTED))
def test_audit_trace_prints_the_full_path(
    demo_home: HitlPaths, capsys: pytest.CaptureFixture[str], domain: str
) -> None:
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        case_id = scalar(con, "SELECT min(case_id) FROM verdicts WHERE domain = ?", [domain])
    main(["--home", str(demo_home.home), "audit", "trace", str(case_id)])
    out = capsys.readouterr().out
    for expected in (
        *TRACE_EXPECTED[domain],
        "human_review",
        "demo-",
        "executed",
    ):
        assert expected in out, f"{expected!r} missing from trace:\n{out}"


def _run_count(paths: HitlPaths) -> int:
    from hitl_gate.app.runner import open_instance

    with open_instance(paths) as instance:
        return len(instance.get_run_records())


def test_second_demo_changes_nothing_and_starts_no_run(demo_home: HitlPaths) -> None:
    """The demo's days are all done: a second demo starts no run and changes nothing.

    (Re-running days on purpose is `hitl run`: tests/e2e/test_rerun_determinism.py.)

    The domains run one after the other in this process (`--jobs 1`): what decides that a
    domain's days are done, its champion set and its batch answered (`run_domain_demo`) is the
    same code in a domain process; the demo's processes side by side are what built this home
    (the demo template) and have tests of their own (tests/unit/app/test_domain_processes.py).
    Side by side here, a launcher's forkserver imported every library again for two domains
    with nothing to run (about 11 of the test's 12 s of CPU).
    """
    before, runs = _counts(demo_home), _run_count(demo_home)
    root = demo_home.review / "batches"
    batches = sorted(str(p.relative_to(root)) for p in root.rglob("manifest.json"))
    assert batches and all(p.count("/") == 2 for p in batches)  # <person>/<batch>/manifest
    main(["--home", str(demo_home.home), "demo", "--jobs", "1"])
    assert _run_count(demo_home) == runs
    assert _counts(demo_home) == before
    assert sorted(str(p.relative_to(root)) for p in root.rglob("manifest.json")) == batches


def _second_batch(paths: HitlPaths, domain: str = CREDIT) -> tuple[str, Path]:
    """An unanswered batch of the domain's first-line queue, and its folder."""
    queue = "credit_analyst" if domain == CREDIT else "loan_officer"
    with audit_connection(paths.audit_db, read_only=True) as con:
        batch_id, folder = con.execute(
            "SELECT batch_id, folder FROM review_batches WHERE domain = ? AND queue = ? "
            "AND batch_id NOT IN (SELECT DISTINCT batch_id FROM verdicts) "
            "ORDER BY batch_id LIMIT 1",
            [domain, queue],
        ).fetchall()[0]
    return str(batch_id), Path(folder)


def _signed_return(paths: HitlPaths, domain: str, out: Path) -> tuple[str, Path, str]:
    """The second batch answered and signed by its assignee's demo key (batch, file, person)."""
    from hitl_gate.app.demo_reviewer import answer_as_assignee, assign_if_unassigned
    from hitl_gate.core.domain import load_domain

    batch_id, folder = _second_batch(paths, domain)
    queue = "credit_analyst" if domain == CREDIT else "loan_officer"
    with audit_connection(paths.audit_db) as con:
        assign_if_unassigned(con, load_domain(domain), batch_id, queue)
        returned, person = answer_as_assignee(con, paths, batch_id, folder, out)
    return batch_id, returned, person


def test_cli_ingest_of_a_signed_return_is_honest_and_exactly_once(
    demo_home: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CLI path: an unsigned copy is refused (non-zero exit, nothing recorded); the signed
    return is accepted as its signer; a row with edited context is refused (non-zero exit);
    the same file again changes nothing and is reported as a replay of that refusal."""
    from hitl_gate.identity.signatures import VERDICTS, sign_file

    unsigned = tmp_path / "unsigned" / "cases.xlsx"
    batch_id, returned, person = _signed_return(demo_home, CREDIT, tmp_path / "cases.xlsx")
    unsigned.parent.mkdir()
    unsigned.write_bytes(returned.read_bytes())
    before = _counts(demo_home)
    with pytest.raises(SystemExit) as refused:
        main(["--home", str(demo_home.home), "review", "ingest", str(unsigned)])
    assert refused.value.code == 1
    assert "not signed" in capsys.readouterr().out
    refused_only = _counts(demo_home)
    assert refused_only["audit_events"] == before["audit_events"] + 1  # the refusal, kept once
    assert {**refused_only, "audit_events": 0} == {**before, "audit_events": 0}
    before = refused_only

    workbook = load_workbook(returned)
    sheet = workbook["cases"]
    header = [c.value for c in sheet[1]]
    sheet.cell(2, header.index("loan_amount") + 1).value = 1.0  # edited context: refused
    workbook.save(returned)
    sign_file(returned, demo_home.home / "demo-keys" / f"{person}_ed25519", VERDICTS)
    rows = sheet.max_row - 1
    with pytest.raises(SystemExit) as partly:
        main(["--home", str(demo_home.home), "review", "ingest", str(returned)])
    assert partly.value.code == 1
    out = capsys.readouterr().out
    assert f"batch {batch_id}, signed by {person} (SHA256:" in out
    assert f"{rows - 1} verdict(s) accepted" in out and "1 row(s) refused" in out
    after = _counts(demo_home)
    assert after["verdicts"] == before["verdicts"] + rows - 1
    assert after["executions"] == before["executions"] + rows - 1

    with pytest.raises(SystemExit):
        main(["--home", str(demo_home.home), "review", "ingest", str(returned)])
    assert "refused again" in capsys.readouterr().out
    assert _counts(demo_home) == after, "the same file must not be applied twice"


def test_sensor_path_takes_in_a_signed_return(demo_home: HitlPaths, tmp_path: Path) -> None:
    """Sensor path: a signed return dropped in the inbox starts one review-loop run (keyed by
    file and signature) that records its verdicts as the signer's."""
    from dagster import DagsterInstance, build_sensor_context

    from hitl_gate.app.runner import raise_for_failure, run_job
    from hitl_gate.core.domain import load_domain
    from hitl_gate.core.settings import HitlSettings
    from pipelines.jobs import review_loop_job_name
    from pipelines.resources import build_resources
    from pipelines.sensors import build_verdict_sensor

    domain = load_domain("lending_club")
    drop = demo_home.review / "inbox" / "officer"
    drop.mkdir(parents=True, exist_ok=True)
    batch_id, returned, person = _signed_return(demo_home, domain.name, drop / "cases.xlsx")
    rows = load_workbook(returned)["cases"].max_row - 1
    resources = build_resources(demo_home)
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, resources={"review": resources["review"]})
        requests = list(build_verdict_sensor(domain)(context))
    assert len(requests) == 1 and requests[0].tags["hitl/verdict_file"] == "officer/cases.xlsx"
    day = date.fromisoformat(requests[0].partition_key)
    result = run_job(
        HitlSettings(paths=demo_home), review_loop_job_name(domain), start=day, end=day
    )
    raise_for_failure(result, "review loop")
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        executed = scalar(
            con,
            "SELECT count(*) FROM case_trace WHERE domain = 'lending_club' AND batch_id = ? "
            "AND reviewer_id = ? AND status = 'executed'",
            [batch_id, person],
        )
        signer = scalar(
            con, "SELECT signer_fingerprint FROM verdict_files WHERE batch_id = ?", [batch_id]
        )
    assert executed == rows and str(signer).startswith("SHA256:")
    assert not returned.exists() and not returned.with_name("cases.xlsx.sig").exists()


def test_sensor_requests_one_run_per_returned_file(demo_home: HitlPaths, tmp_path: Path) -> None:
    from dagster import DagsterInstance, build_sensor_context

    from hitl_gate.core.domain import load_domain
    from hitl_gate.review.intake.signed import read_signature, signature_digest
    from hitl_gate.review.intake.verdict_files import file_sha256
    from pipelines.resources import ReviewWorkspace
    from pipelines.sensors import build_verdict_sensor

    batch_id, folder = _second_batch(demo_home)
    inbox = tmp_path / "review" / "inbox"
    inbox.mkdir(parents=True)
    dropped = shutil.copy(folder / "cases.xlsx", inbox / "returned.xlsx")
    (inbox / "returned.xlsx.sig").write_text("-----BEGIN SSH SIGNATURE-----\n")
    shutil.copy(folder / "cases.xlsx", inbox / "still-unsigned.xlsx")  # waits for its .sig
    sensor = build_verdict_sensor(load_domain(CREDIT))
    review = ReviewWorkspace(review_dir=str(tmp_path / "review"), secrets_dir=str(tmp_path))
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, resources={"review": review})
        requests = list(sensor(context))
    assert len(requests) == 1
    signature = signature_digest(read_signature(Path(dropped)))
    assert requests[0].run_key == f"{file_sha256(Path(dropped))}-{signature[:16]}"
    assert (
        requests[0].partition_key
        == date(
            int(batch_id.split("-")[1][:4]),
            int(batch_id.split("-")[1][4:6]),
            int(batch_id.split("-")[1][6:]),
        ).isoformat()
    )


def test_bad_rows_are_quarantined_and_counted(demo_home: HitlPaths) -> None:
    day = "2018-01-02"
    folder = demo_home.landing / "applications" / day
    good = next(folder.glob("applications_*.csv")).read_text(encoding="utf-8").splitlines()
    header, first = good[0], good[1].split(",")
    late = [header]
    dup = list(first)  # the same case id again: must be quarantined, not decided twice
    late.append(",".join(dup))
    bad_amount = list(first)
    bad_amount[0] = "LC18Q1-LATE1"
    bad_amount[header.split(",").index("loan_amount")] = "lots"
    late.append(",".join(bad_amount))
    (folder / "late_arrivals.csv").write_text("\n".join(late) + "\n", encoding="utf-8")
    (folder / "garbage.csv").write_bytes(b"\xff\xfe\x00not a csv at all")
    settled(folder / "late_arrivals.csv", folder / "garbage.csv")

    main(["--home", str(demo_home.home), "run", "--partition", day])
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        quarantine = query_frame(
            con, "SELECT * FROM quarantine WHERE partition_date = ?", [date.fromisoformat(day)]
        )
        accounting = query_frame(
            con,
            "SELECT * FROM partition_accounting WHERE domain = ? AND partition_date = ?",
            [CREDIT, date.fromisoformat(day)],
        ).row(0, named=True)
    checks = set(quarantine["check_name"])
    assert "duplicate_case_id" in checks and "type" in checks
    assert quarantine.filter(quarantine["file_path"].str.ends_with("garbage.csv")).height == 1
    assert accounting["balanced"]
    assert accounting["rows_quarantined"] >= 2
