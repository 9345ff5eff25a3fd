"""The standalone bundle checker restates the chain rules exactly and follows key hand-overs
from the pinned key (the bundle itself, on the demo: tests/e2e/test_audit_bundle.py)."""

from __future__ import annotations

import json
import random
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hitl_gate.audit import bundle, bundle_check, chain, seal
from hitl_gate.audit.bundle import BundleScope, export_bundle
from hitl_gate.audit.keys import public_key_hex
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.trust import sign_handover
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection
from tests.unit.audit.tamper_home import DOMAIN, TamperHome, add_row, tamper_home_at


def test_the_standalone_checker_restates_the_chain_rules_exactly() -> None:
    """`bundle_check` may not import hitl-gate; this keeps its copy of the rules equal."""
    rng = random.Random(7)
    for count in (0, 1, 2, 3, 5, 8, 13, 16, 17, 33, 100, 300):
        leaves = [rng.randbytes(32) for _ in range(count)]
        for fanout in (2, 16):
            assert bundle_check.merkle_root(leaves, fanout) == chain.merkle_root_of_digests(
                leaves, fanout
            )
    assert bundle_check.CHECKPOINT_FIELDS == seal.CHECKPOINT_FIELDS
    cp = {name: f"v{i}" for i, name in enumerate(seal.CHECKPOINT_FIELDS)} | {"first_seq": 3}
    for fanout in (None, 2, 16):
        with_fanout = cp if fanout is None else cp | {"merkle_fanout": fanout}
        assert bundle_check.checkpoint_message(with_fanout) == seal.checkpoint_message(with_fanout)
    source = Path(bundle_check.__file__).read_text(encoding="utf-8")
    assert "from hitl_gate" not in source and "import hitl_gate" not in source


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> tuple[TamperHome, Any, Any]:
    """A sealed home whose key was handed over to a second key, which signed a later run."""
    home = tamper_home_at(tmp_path_factory.mktemp("rotated") / "t")
    old, new = home.key(), Ed25519PrivateKey.generate()
    with audit_connection(home.db) as con:
        sign_handover(con, old, new, home.checkpoints)
        for i in range(20, 23):
            add_row(con, "decisions", i, domain=DOMAIN, case_id=f"C{i}", route="auto_decline")
            add_row(con, "executions", i, domain=DOMAIN, case_id=f"C{i}", action="decline")
        seal_run(con, "run-after-rotation", new, home.checkpoints)
        assert verify_audit(con, home.checkpoints, public_key_hex(old)).ok
    return home, old, new


def _export(home: TamperHome, signer: Any, out: Path) -> Path:
    with audit_connection(home.db, read_only=True) as con:
        export_bundle(con, BundleScope(date(2026, 1, 1), date(2026, 1, 3)), out, signer)
    return out


def _resign(out: Path, signer: Any) -> None:
    """What an insider holding `signer` does after editing a bundle: a fresh manifest."""
    manifest = json.loads((out / bundle_check.MANIFEST).read_text())
    manifest.pop("files")
    (out / bundle_check.SUMS).unlink()
    bundle._write_manifest(out, manifest, signer)


def test_the_bundle_checker_follows_key_hand_overs_from_the_pinned_key(
    rotated: tuple[TamperHome, Any, Any], tmp_path: Path
) -> None:
    home, old, new = rotated
    out = _export(home, new, tmp_path / "b")
    assert (out / "handovers").is_dir()
    report = bundle_check.check_bundle(out, public_key_hex(old))
    assert report.ok and report.checkpoints == 2, report.summary()
    pinned_new = bundle_check.check_bundle(out, public_key_hex(new)).summary()
    assert "signed by an unexpected key" in pinned_new  # the new key alone covers no old run


def test_a_bundle_without_its_hand_over_fails_against_the_pinned_key(
    rotated: tuple[TamperHome, Any, Any], tmp_path: Path
) -> None:
    home, old, new = rotated
    out = _export(home, new, tmp_path / "b")
    shutil.rmtree(out / "handovers")
    _resign(out, new)
    summary = bundle_check.check_bundle(out, public_key_hex(old)).summary()
    assert f"signed by an unexpected key {public_key_hex(new)}" in summary
    assert "manifest.json: signed by" in summary


def test_a_hand_over_forged_without_the_pinned_key_is_not_followed(
    rotated: tuple[TamperHome, Any, Any], tmp_path: Path
) -> None:
    """An insider with a key of their own hands over from it to the new key (both sign)."""
    home, old, new = rotated
    out = _export(home, new, tmp_path / "b")
    forger = Ed25519PrivateKey.generate()
    (path,) = (out / "handovers").glob("*.json")
    record = json.loads(path.read_text())
    record["old_public_key"] = public_key_hex(forger)
    message = bundle_check.handover_message(record)
    record["old_signature"] = forger.sign(message).hex()
    record["new_signature"] = new.sign(message).hex()
    path.write_text(json.dumps(record))
    _resign(out, new)
    summary = bundle_check.check_bundle(out, public_key_hex(old)).summary()
    assert "not the key then trusted" in summary and "signed by an unexpected key" in summary
    record["old_public_key"] = public_key_hex(old)  # naming the pinned key: signature fails
    path.write_text(json.dumps(record))
    _resign(out, new)
    summary = bundle_check.check_bundle(out, public_key_hex(old)).summary()
    assert "bad signature of the old or the new key" in summary
