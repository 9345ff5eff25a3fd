"""Benchmark: the review portal's case page with 100,000 open cases (target p95 < 200 ms).

`python -m bench portal [--cases N] [--requests R]`. The audit database holds N open cases
(decisions, batch members, assignments) in batches of 200 spread over 50 reviewers; the
measured reviewer holds 2,000 of them in ten batches exported for real (signed manifests,
CSV and workbook files), the others exist as database rows only (a case page reads the
viewer's own batch files, never anyone else's). Each request is a full `GET /case/<ref>`
through the Starlette app (session, registry replay, authorisation over the person's open
cases, manifest verification, the exported row, decision, rules, opinions, the feature
contributions computed from the day's stored features of all N cases, rendering).
Prints the median and 95th percentile; the lead records them in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import statistics
import subprocess
import tempfile
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyotp

from bench.review import _cases
from hitl_gate.app.portal.app import build_app
from hitl_gate.app.portal.contributions import ContributionSource
from hitl_gate.app.portal.credentials import (
    Credential,
    record_enrolment,
    save_credential,
    sign_enrolment,
)
from hitl_gate.app.portal.verdicts import IntakePlace
from hitl_gate.app.portal.web import PortalConfig
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.identity.store import append_act, draft_act, load_registry, sign_act
from hitl_gate.review.export.batches import BatchExport, export_review_batches
from hitl_gate.review.settings import review_settings
from models.scorecard import fit_scorecard
from models.scoring import ChampionModel

CREATED = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)
DAY = date(2018, 3, 1)
REVIEWER = "bench-analyst"
BATCH = 200
MINE = 2_000
OTHERS = 50
PASSWORD = "bench portal password"
KEY = b"p" * 32


def _key(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def _registry(con: duckdb.DuckDBPyConnection, keys: Path) -> None:
    at = datetime(2018, 1, 1, tzinfo=UTC)
    people = (
        ("bench-admin", ["*:admin"]),
        (REVIEWER, ["consumer_credit:analyst"]),
        ("portal", ["*:portal"]),
    )
    for name, grants in people:
        public = Path(f"{_key(keys, name)}.pub").read_text(encoding="ascii")
        payload = draft_act(
            load_registry(con), "add_person", at=at, person_id=name, display_name=name,
            grants=grants, keys=[{"public_key": public}],
        )  # fmt: skip
        append_act(con, sign_act(payload, keys / "bench-admin"))


def _database_rows(
    con: duckdb.DuckDBPyConnection, mine: dict[str, list[str]], total: int, policy: Path
) -> None:
    """Decisions, batches, members and assignments of `total` open cases."""
    batches, members, assignments = [], [], []
    for batch_id, cases in mine.items():
        batches.append((batch_id, len(cases)))
        members += [(batch_id, case) for case in cases]
        assignments.append((batch_id, REVIEWER))
    others = total - len(members)
    for index in range(0, others, BATCH):
        batch_id = f"consumer_credit-20180301-credit_analyst-syn{index // BATCH:05d}"
        cases = [f"SYN-{k:07d}" for k in range(index, min(index + BATCH, others))]
        batches.append((batch_id, len(cases)))
        members += [(batch_id, case) for case in cases]
        assignments.append((batch_id, f"other-{(index // BATCH) % OTHERS:02d}"))
    frames = {
        "b": pl.DataFrame(batches, schema=["batch_id", "n"], orient="row"),
        "m": pl.DataFrame(members, schema=["batch_id", "case_id"], orient="row"),
        "a": pl.DataFrame(assignments, schema=["batch_id", "assignee"], orient="row"),
    }
    for name, frame in frames.items():
        con.register(f"bench_{name}", frame.to_arrow())
    due = CREATED + timedelta(days=2)
    text = policy.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    con.execute(
        "INSERT INTO policy_versions VALUES (?, 'v1', 'consumer_credit', 'bench', NULL, ?, ?)",
        [digest, text, CREATED],
    )
    con.execute(
        "INSERT INTO review_batches SELECT batch_id, 'consumer_credit', $day, 'credit_analyst', "
        "'x', n, $created, $due, 'x', 'bench' FROM bench_b",
        {"day": DAY, "created": CREATED, "due": due},
    )
    con.execute(
        "INSERT INTO review_batch_cases SELECT batch_id, 'consumer_credit', case_id FROM bench_m"
    )
    con.execute(
        "INSERT INTO decisions (domain, case_id, partition_date, pd, score, risk_band, "
        "reason_codes, rules_fired, route, route_reason_code, review_queue, review_priority, "
        "policy_version, policy_digest, model_version, run_id, decided_at) SELECT "
        "'consumer_credit', case_id, $day, 0.05, 610, 'D', ['R01'], ['REV-BAND-C'], "
        "'human_review', 'H07', 'credit_analyst', 2, 'v1', $digest, '1', 'bench', $created "
        "FROM bench_m",
        {"day": DAY, "created": CREATED, "digest": digest},
    )
    con.execute(
        "INSERT INTO review_assignments (batch_id, seq, domain, queue, assignee_id, "
        "opinion_slot, assigned_by, recorded_at) SELECT batch_id, 1, 'consumer_credit', "
        "'credit_analyst', assignee, 0, 'pipeline', $created FROM bench_a",
        {"created": CREATED},
    )


def _world(root: Path, total: int) -> PortalConfig:
    domain = load_domain("consumer_credit")
    settings = review_settings(domain)
    assert settings is not None
    exported = export_review_batches(
        _cases(MINE),
        BatchExport(
            domain=domain, batches_dir=root / "batches", key=KEY, partition_date=DAY,
            created_at=CREATED, context={"policy_version": "v1"}, settings=settings,
        ),
    )  # fmt: skip
    keys = root / "keys"
    keys.mkdir()
    with audit_connection(root / "audit.duckdb") as con:
        _registry(con, keys)
        mine = {b.batch_id: list(b.case_ids) for b in exported}
        _database_rows(con, mine, total, domain.policy_path)
        credential = Credential.new(REVIEWER, PASSWORD)
        act = sign_enrolment(credential, keys / REVIEWER, CREATED)
        record_enrolment(con, load_registry(con), REVIEWER, act, CREATED)
    save_credential(root / "secrets", credential)
    with audit_connection(root / "audit.duckdb", read_only=True) as con:
        case_ids = [row[0] for row in con.execute("SELECT case_id FROM decisions").fetchall()]
    return PortalConfig(
        audit_db=root / "audit.duckdb",
        secrets_dir=root / "secrets",
        place=IntakePlace(root / "batches", root / "archive", KEY, keys / "portal"),
        domains={domain.name: domain},
        clock=lambda: CREATED + timedelta(hours=1),
        contributions=_contributions(root, domain, case_ids),
    )


def _contributions(root: Path, domain: DomainConfig, case_ids: list[str]) -> ContributionSource:
    """The day's stored features of every open case (one Parquet file, as the pipeline stores
    it) and a scorecard fitted on them, handed out as version 1 (no MLflow load is measured:
    the portal loads a version once per process)."""
    rng = np.random.default_rng(11)
    features = pl.DataFrame(
        {
            domain.case_id: case_ids,
            **{name: rng.gamma(2.0, 1.0, len(case_ids)) for name in domain.model.features},
        }
    )
    folder = root / "warehouse" / domain.name / "case_features"
    folder.mkdir(parents=True)
    features.write_parquet(folder / f"{DAY.isoformat()}.parquet")
    sample = features.head(2_000)
    label = (sample["loan_to_income"].to_numpy() > 2.5).astype(int)
    model = ChampionModel(
        name=domain.model.name, version="1", run_id="bench", model_uri="", pyfunc=None,
        artifact_digest="", pipeline=fit_scorecard(sample.select(domain.model.features), label),
    )  # fmt: skip
    return ContributionSource(root / "warehouse", root / "mlflow", loader=lambda *_: model)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench portal", description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    with tempfile.TemporaryDirectory(prefix="hitl-bench-portal-") as folder:
        started = time.perf_counter()
        config = _world(Path(folder), args.cases)
        print(f"set-up: {args.cases:,} open cases in {time.perf_counter() - started:.1f} s")
        client = TestClient(build_app(config), follow_redirects=False)
        page = client.get("/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        code = pyotp.TOTP(_secret(config)).at(config.clock())
        signed = client.post("/sign-in", data={"csrf": csrf.group(1), "person_id": REVIEWER,
                                               "password": PASSWORD, "totp": code})  # fmt: skip
        assert signed.status_code == 303, signed.text
        queue_times = []
        for _ in range(10):
            t0 = time.perf_counter()
            queue = client.get("/queue")
            queue_times.append(time.perf_counter() - t0)
        refs = re.findall(r'href="/case/([0-9a-f]+)"', queue.text)
        assert len(refs) == MINE, len(refs)
        rng = random.Random(7)
        for ref in refs[:5]:  # warm-up; the page carries the model's terms
            page = client.get(f"/case/{ref}")
            assert page.status_code == 200 and "Not available for this case" not in page.text
        times, cpu = [], []
        for ref in rng.sample(refs, min(args.requests, len(refs))):
            t0, c0 = time.perf_counter(), time.process_time()
            response = client.get(f"/case/{ref}")
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert response.status_code == 200
    median, p95 = statistics.median(times) * 1000, _percentile(times, 0.95) * 1000
    print(
        f"case page, {args.cases:,} open cases, {len(times)} requests: "
        f"median {median:.1f} ms, p95 {p95:.1f} ms (target p95 < 200 ms); CPU per request: "
        f"median {statistics.median(cpu) * 1000:.1f} ms, p95 {_percentile(cpu, 0.95) * 1000:.1f} ms"
    )
    print(
        f"queue page ({MINE:,} cases listed): median {statistics.median(queue_times) * 1000:.1f} ms"
    )


def _secret(config: PortalConfig) -> str:
    from hitl_gate.app.portal.credentials import load_credential

    credential = load_credential(config.secrets_dir, REVIEWER)
    assert credential is not None
    return credential.totp_secret


if __name__ == "__main__":
    main()
