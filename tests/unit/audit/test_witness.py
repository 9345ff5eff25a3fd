"""The external witness: append-only publication, its own line chain, git and RFC 3161 paths."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_gate.audit.seal import checkpoint_message, seal_run
from hitl_gate.audit.verify import VerifyReport, verify_audit
from hitl_gate.audit.witness import (
    STAMP_FIELD,
    TsaCheck,
    WitnessConfig,
    checkpoint_stamp,
    load_tsa_roots,
    publish_checkpoints,
    read_witness,
    stamp,
    timestamp_request,
)
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings
from tests.blank_audit_db import blank_if_missing
from tests.unit.audit.local_tsa import LocalTsa, local_tsa
from tests.unit.audit.tamper_home import (
    DOMAIN,
    TamperHome,
    _first_run,
    add_row,
    build_tamper_home,
    tamper_home_at,
)


def test_each_checkpoint_is_witnessed_once_in_a_valid_line_chain(tmp_path: Path) -> None:
    home = tamper_home_at(tmp_path / "t")
    read = read_witness(home.witness.file)
    assert sorted(read.checkpoints) == [33, 36, 39] and not read.problems
    with audit_connection(home.db) as con:
        assert publish_checkpoints(con, home.witness, checkpoint_message) == 0  # nothing new
        add_row(con, "executions", 13, domain=DOMAIN, case_id="C13")
        home.seal(con, "run-4")
    lines = home.witness.file.read_text().splitlines()
    assert len(lines) == 4
    assert json.loads(lines[3])["prev"] == hashlib.sha256(lines[2].encode()).hexdigest()
    assert json.loads(lines[3])["checkpoint"]["last_seq"] == 40


def test_a_seal_that_never_published_is_caught_up_by_the_next(tmp_path: Path) -> None:
    home = tamper_home_at(tmp_path / "t")
    home.witness.file.unlink()  # as if every seal so far had crashed before publishing
    with audit_connection(home.db) as con:
        assert publish_checkpoints(con, home.witness, checkpoint_message) == 3
        report = verify_audit(con, home.checkpoints, home.public_key(), witness=home.witness.folder)
    assert report.ok, report.summary()


def test_a_missing_witness_is_a_note_and_a_newer_database_checkpoint_too(tmp_path: Path) -> None:
    home = tamper_home_at(tmp_path / "t")
    with audit_connection(home.db) as con:
        missing = verify_audit(con, home.checkpoints, None, witness=tmp_path / "nowhere")
        assert missing.ok and any("no witness file" in n for n in missing.notes)
        add_row(con, "executions", 13, domain=DOMAIN, case_id="C13")
        seal_run(con, "unpublished", home.key(), home.checkpoints)  # no witness given
        report = verify_audit(con, home.checkpoints, None, witness=home.witness.folder)
    assert report.ok, report.summary()
    assert any("not witnessed yet" in n for n in report.notes)


@pytest.mark.slow  # git runs: `make test`, not test-fast
def test_a_git_witness_commits_every_publication(tmp_path: Path) -> None:
    folder = tmp_path / "t" / "home-witness"
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    home = build_tamper_home(tmp_path / "t")
    log = subprocess.run(
        ["git", "-C", str(folder), "log", "--format=%s"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert log == ["checkpoints up to 39", "checkpoints up to 36", "checkpoints up to 33"]
    assert home.witness.file.exists()


def test_rfc3161_request_carries_the_hash_of_the_signed_message() -> None:
    """No network in tests: the request is built and checked; sending it is one HTTP POST."""
    message = b'{"first_seq":1,"last_seq":3}'
    request = timestamp_request(message)
    assert request[0] == 0x30  # a DER SEQUENCE
    assert hashlib.sha512(message).digest() in request  # the message imprint
    assert timestamp_request(message) != request  # a fresh nonce each time


def test_witness_folder_defaults_outside_the_home_and_is_configurable(tmp_path: Path) -> None:
    paths = HitlPaths.at(tmp_path / "home")
    assert paths.witness_dir == (tmp_path / "home-witness").resolve()
    assert not paths.witness_dir.is_relative_to(paths.home)
    settings = HitlSettings.from_environ(
        {"HITL_AUDIT_WITNESS_DIR": str(tmp_path / "w"), "HITL_AUDIT_TSA_URL": "http://tsa"},
        home=tmp_path / "home",
    )
    assert settings.paths.witness_dir == (tmp_path / "w").resolve()
    assert settings.tsa_url == "http://tsa"
    assert HitlSettings.from_environ(settings.to_environ()) == settings
    assert WitnessConfig(settings.paths.witness_dir).file.name == "checkpoints.jsonl"


# RFC 3161 time-stamps of the single chain's checkpoints, from a real local TSA (OpenSSL's).


def _stamped_home(root: Path, tsa_url: str, from_run: int = 1) -> TamperHome:
    """Three sealed runs as `build_tamper_home`, witnessed with the TSA from run `from_run`."""
    home = TamperHome(root)
    with audit_connection(blank_if_missing(home.db)) as con:
        _first_run(con)
        for run, cases in ((1, range(0)), (2, range(7, 10)), (3, range(10, 13))):
            for i in cases:
                add_row(con, "executions", i, domain=DOMAIN, case_id=f"C{i}", action="decline")
            witness = WitnessConfig(home.witness.folder, tsa_url if run >= from_run else None)
            seal_run(con, f"run-{run}", home.key(), home.checkpoints, witness=witness)
    return home


def _verify(home: TamperHome, roots: Path | None) -> VerifyReport:
    tsa = TsaCheck(tuple(load_tsa_roots(roots)))
    with audit_connection(home.db, read_only=True) as con:
        return verify_audit(
            con, home.checkpoints, home.public_key(), witness=home.witness.folder, tsa=tsa
        )


def _problems(report: VerifyReport) -> str:
    return "\n".join(p.message for p in report.problems)


@pytest.fixture(scope="module")
def stamped_template(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TamperHome, LocalTsa]]:
    """The time-stamped home sealed once; the TSA serves for the module's tests."""
    with local_tsa() as tsa:
        yield _stamped_home(tmp_path_factory.mktemp("stamped") / "t", tsa.url), tsa


@pytest.fixture
def stamped(
    stamped_template: tuple[TamperHome, LocalTsa], tmp_path: Path
) -> tuple[TamperHome, LocalTsa]:
    """A copy of the time-stamped home (witness and key included) to tamper with."""
    home, tsa = stamped_template
    return home.copy_to(tmp_path / "t"), tsa


@pytest.mark.slow  # a real TSA (openssl ts behind an HTTP server): `make test`
def test_each_checkpoint_is_time_stamped_and_verify_checks_the_stamps(
    stamped: tuple[TamperHome, LocalTsa],
) -> None:
    home, tsa = stamped
    folder = home.witness.folder
    assert [p.name for p in sorted(folder.glob("*.tsr"))] == [
        checkpoint_stamp(folder, seq).name for seq in (33, 36, 39)
    ]
    lines = [json.loads(line) for line in home.witness.file.read_text().splitlines()]
    assert [line["checkpoint"][STAMP_FIELD] for line in lines] == [
        "000000000033.tsr", "000000000036.tsr", "000000000039.tsr",
    ]  # fmt: skip
    report = _verify(home, tsa.roots)
    assert report.ok, report.summary()
    assert not any("imprint only" in n for n in report.notes)
    unpinned = _verify(home, None)
    assert unpinned.ok and any("checkpoints' RFC 3161 stamps checked for their imprint only"
                               in n for n in unpinned.notes), unpinned.summary()  # fmt: skip


@pytest.mark.slow  # a real TSA (openssl ts behind an HTTP server): `make test`
def test_a_stamp_swapped_for_another_checkpoints_is_named(
    stamped: tuple[TamperHome, LocalTsa],
) -> None:
    home, tsa = stamped
    folder = home.witness.folder
    checkpoint_stamp(folder, 36).write_bytes(checkpoint_stamp(folder, 33).read_bytes())
    pinned = _problems(_verify(home, tsa.roots))
    assert "checkpoint 36: time-stamp 000000000036.tsr: does not verify" in pinned, pinned
    unpinned = _problems(_verify(home, None))
    assert (
        "checkpoint 36: time-stamp 000000000036.tsr: its message imprint is not the hash of the "
        "signed checkpoint" in unpinned
    ), unpinned


@pytest.mark.slow  # a real TSA (openssl ts behind an HTTP server): `make test`
def test_a_deleted_stamp_is_named(stamped: tuple[TamperHome, LocalTsa]) -> None:
    home, tsa = stamped
    checkpoint_stamp(home.witness.folder, 39).unlink()
    report = _verify(home, tsa.roots)
    assert not report.ok
    assert (
        "checkpoint 39: its RFC 3161 time-stamp 000000000039.tsr, recorded by the witness, is "
        "missing (deleted)" in _problems(report)
    ), report.summary()


@pytest.mark.slow  # a real TSA (openssl ts behind an HTTP server): `make test`
def test_a_stamp_from_an_insiders_tsa_fails_against_the_pinned_root(
    stamped: tuple[TamperHome, LocalTsa],
) -> None:
    """The right message stamped by another TSA (e.g. to back-date it) passes the imprint but
    not the pinned root."""
    home, tsa = stamped
    with audit_connection(home.db, read_only=True) as con:
        row = con.execute("SELECT * FROM audit_checkpoints WHERE last_seq = 33")
        record = dict(zip([d[0] for d in con.description], row.fetchall()[0], strict=True))
    with local_tsa("insider") as other:
        stamp(other.url, checkpoint_message(record), checkpoint_stamp(home.witness.folder, 33))
    problems = _problems(_verify(home, tsa.roots))
    assert (
        "checkpoint 33: time-stamp 000000000033.tsr: does not verify against the TSA roots"
        in problems
    ), problems
    assert _verify(home, None).ok  # the imprint alone cannot tell: hence the pinned roots


@pytest.mark.slow  # a real TSA (openssl ts behind an HTTP server): `make test`
def test_a_stamp_of_an_edited_checkpoint_is_named(stamped: tuple[TamperHome, LocalTsa]) -> None:
    """The checkpoint edited in the database and in its file alike: its stamp no longer
    time-stamps it (beside the signature and the witness, which also name it)."""
    home, tsa = stamped
    with audit_connection(home.db) as con:
        con.execute("UPDATE audit_checkpoints SET run_id = 'x' WHERE last_seq = 36")
    for path in home.checkpoints.glob("checkpoint-*.json"):
        record = json.loads(path.read_text())
        if record["last_seq"] == 36:
            path.write_text(json.dumps({**record, "run_id": "x"}))
    for roots in (tsa.roots, None):
        problems = _problems(_verify(home, roots))
        assert "checkpoint 36: time-stamp 000000000036.tsr: " in problems, problems


@pytest.mark.slow  # a real TSA (openssl ts behind an HTTP server): `make test`
def test_checkpoints_witnessed_before_a_tsa_was_configured_need_no_stamp(
    tmp_path: Path,
) -> None:
    with local_tsa() as tsa:
        home = _stamped_home(tmp_path / "t", tsa.url, from_run=2)
        roots = tmp_path / "roots.pem"
        roots.write_bytes(tsa.roots.read_bytes())  # the TSA's folder goes with it
    folder = home.witness.folder
    names = [p.name for p in sorted(folder.glob("*.tsr"))]
    assert names == ["000000000036.tsr", "000000000039.tsr"]
    first = json.loads(home.witness.file.read_text().splitlines()[0])
    assert STAMP_FIELD not in first["checkpoint"]  # as a witness line written before the field
    report = _verify(home, roots)
    assert report.ok, report.summary()
    checkpoint_stamp(folder, 36).unlink()
    assert "checkpoint 36: its RFC 3161 time-stamp" in _problems(_verify(home, roots))
