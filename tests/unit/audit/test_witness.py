"""The external witness: append-only publication, its own line chain, git and RFC 3161 paths."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from hitl_gate.audit.seal import checkpoint_message, seal_run
from hitl_gate.audit.verify import verify_audit
from hitl_gate.audit.witness import (
    WitnessConfig,
    publish_checkpoints,
    read_witness,
    timestamp_request,
)
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings
from tests.unit.audit.tamper_home import DOMAIN, add_row, build_tamper_home


def test_each_checkpoint_is_witnessed_once_in_a_valid_line_chain(tmp_path: Path) -> None:
    home = build_tamper_home(tmp_path / "t")
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
    home = build_tamper_home(tmp_path / "t")
    home.witness.file.unlink()  # as if every seal so far had crashed before publishing
    with audit_connection(home.db) as con:
        assert publish_checkpoints(con, home.witness, checkpoint_message) == 3
        report = verify_audit(con, home.checkpoints, home.public_key(), witness=home.witness.folder)
    assert report.ok, report.summary()


def test_a_missing_witness_is_a_note_and_a_newer_database_checkpoint_too(tmp_path: Path) -> None:
    home = build_tamper_home(tmp_path / "t")
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
