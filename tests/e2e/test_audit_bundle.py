"""The regulator bundle (`hitl audit export`, `verify-bundle`): it checks out on its own, and a
changed byte in any kind of file it holds is caught, by the check that owns that file."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from hitl_gate.app.cli import main
from hitl_gate.audit.bundle import BundleError, BundleScope, export_bundle
from hitl_gate.audit.bundle_check import check_bundle
from hitl_gate.audit.keys import checkpoint_signer, public_key_hex
from hitl_gate.audit.run_seal import reading_session
from hitl_gate.audit.run_segments import Segments
from hitl_gate.core.database import audit_connection, scalar
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import AuditKeySettings
from tests.e2e.home_templates import HomeTemplate

FROM, TO = "2018-01-01", "2018-01-02"  # the demo's returned verdict files are for day 1


@pytest.fixture(scope="module")
def bundle(demo_template: HomeTemplate, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export for the module, from a demo home of its own (checked out for the export)."""
    out = tmp_path_factory.mktemp("bundle") / "b"
    with demo_template.checkout() as work:
        main(["--home", str(work / "home"), "audit", "export", "--from", FROM, "--to", TO,
              "--out", str(out)])  # fmt: skip
    return out


def test_a_bundle_covers_the_cases_decided_in_the_range_and_checks_out(
    bundle: Path, demo_home: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    import polars as pl

    with audit_connection(demo_home.audit_db, read_only=True) as con:
        cases = int(scalar(con, "SELECT count(*) FROM decisions WHERE partition_date "
                                "BETWEEN ? AND ?", [FROM, TO]))  # fmt: skip
    trace = pl.read_parquet(bundle / "trace" / "case_trace.parquet")
    days = {d.isoformat() for d in trace["partition_date"]}
    assert trace.height == cases > 0 and days == {FROM, TO}
    assert pl.read_csv(bundle / "trace" / "case_trace.csv").height == cases
    decisions = (bundle / "lineage" / "decision.jsonl").read_text().splitlines()
    assert len(decisions) == cases
    assert all(json.loads(line)["partition_date"] in (FROM, TO) for line in decisions)
    assert (bundle / "lineage" / "verdict.jsonl").read_text().strip()  # verdicts came along
    manifest = json.loads((bundle / "manifest.json").read_text())
    for spec in manifest["ranges"]:  # whole checkpoint ranges, with the link before each
        lines = (bundle / spec["entries_file"]).read_bytes().split(b"\n")[:-1]
        assert len(lines) == spec["last_seq"] - spec["first_seq"] + 1
        assert lines[0].split(b"\t")[2][:64].decode() == spec["prev_hash"]

    key = public_key_hex(checkpoint_signer(demo_home, AuditKeySettings()))  # the home's token
    main(["audit", "verify-bundle", str(bundle), "--public-key", key])
    assert ": OK" in capsys.readouterr().out
    assert not check_bundle(bundle, public_key="00" * 32).ok  # someone else's key
    # the shipped checker runs on its own, from the bundle, without hitl-gate on the path
    run = subprocess.run([sys.executable, "-I", str(bundle / "verify_bundle.py"), str(bundle)],
                         capture_output=True, text=True, cwd=bundle, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _inside(path: Path, marker: bytes, skip: int = 0) -> int:
    """The offset `skip` bytes after the first `marker` of the file."""
    return path.read_bytes().index(marker) + len(marker) + skip


TAMPERED = [
    # file (glob), where to flip (marker, skip) or None for the middle, what must be reported
    ("log/entries-*.tsv", (b'"digest":"', 5), "entry hash differs"),
    ("checkpoints/checkpoint-*.json", (b'"merkle_root": "', 5), "Merkle root differs"),
    ("checkpoints/checkpoint-*.json", (b'"created_at": "', 3), "bad signature"),
    ("lineage/decision.jsonl", (b'"score":', 1), "row altered"),
    ("lineage/index.csv", (b"\ndecision,", 40), "lineage/decision.jsonl line"),
    ("manifest.json", (b'"created_at": "', 3), "bad signature"),
    ("manifest.sig", None, "bad signature"),
    ("public_keys.txt", None, "key"),
    ("SHA256SUMS", None, "SHA256SUMS"),
    ("README.md", None, "README.md: SHA-256 differs"),
    ("public_key.pem", (b"\n", 5), "public_key.pem: SHA-256 differs"),
    ("verify_bundle.py", None, "verify_bundle.py: SHA-256 differs"),
    ("trace/case_trace.parquet", None, "case_trace.parquet: SHA-256 differs"),
    ("trace/case_trace.csv", None, "case_trace.csv: SHA-256 differs"),
]


@pytest.mark.parametrize(("pattern", "where", "expected"), TAMPERED)
def test_a_changed_byte_in_any_kind_of_bundle_file_is_detected(
    bundle: Path, tmp_path: Path, pattern: str, where: tuple[bytes, int] | None, expected: str
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    target = sorted(copy.glob(pattern))[0]
    at = target.stat().st_size // 2 if where is None else _inside(target, *where)
    _flip(target, at)
    report = check_bundle(copy)
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems
    if pattern not in ("manifest.json", "manifest.sig", "public_keys.txt"):
        # the manifest lists every other file, so its hash check catches the change as well
        name = target.relative_to(copy).as_posix()
        assert any(p.startswith(f"{name}: SHA-256 differs") for p in report.problems)


def test_a_consistent_forgery_is_caught_by_the_operators_key(bundle: Path, tmp_path: Path) -> None:
    """Rewriting a row AND its digest everywhere, then re-signing with another key, still fails
    against the published key: the checkpoints' signatures cover the Merkle roots."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    honest = (copy / "public_keys.txt").read_text().split()[0]
    rows = copy / "lineage" / "decision.jsonl"
    first = rows.read_text().splitlines()[0]
    forged = first.replace('"route":"', '"route":"x', 1)
    rows.write_text(rows.read_text().replace(first, forged, 1))
    old, new = (hashlib.sha256(t.encode()).hexdigest() for t in (first, forged))
    (copy / "lineage" / "index.csv").write_text(
        (copy / "lineage" / "index.csv").read_text().replace(old, new)
    )
    forger = Ed25519PrivateKey.generate()
    (copy / "public_keys.txt").write_text(public_key_hex(forger) + "\n")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["signing_key"] = public_key_hex(forger)
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((copy / name).read_bytes()).hexdigest()
    body = json.dumps(manifest, indent=2) + "\n"
    (copy / "manifest.json").write_text(body)
    (copy / "manifest.sig").write_text(forger.sign(body.encode()).hex())
    problems = check_bundle(copy, public_key=honest).problems
    # The chain that logged the row (the single chain, or a run's segment) still says `old`.
    with (copy / "lineage" / "index.csv").open(encoding="utf-8", newline="") as handle:
        row = next(r for r in csv.DictReader(handle)
                   if r["event_type"] == "decision" and r["line"] == "1")  # fmt: skip
    entry = (f"segment {row['segment']} entry seq {row['seq']}" if row.get("segment")
             else f"log entry {row['seq']}")  # fmt: skip
    assert any(f"differs from {entry} " in p for p in problems), problems
    assert any("not the expected key" in p for p in problems)


def test_export_refuses_an_empty_range_and_a_used_folder(
    demo_home: HitlPaths, tmp_path: Path
) -> None:
    key = checkpoint_signer(demo_home, AuditKeySettings())
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        empty = BundleScope(_day("2030-01-01"), _day("2030-01-02"))
        with pytest.raises(BundleError, match="no cases decided"):
            export_bundle(con, empty, tmp_path / "e", key)
        with pytest.raises(BundleError, match="not empty"):
            export_bundle(con, BundleScope(_day(FROM), _day(TO)), used, key)


def test_export_refuses_rows_the_log_does_not_back(demo_home: HitlPaths, tmp_path: Path) -> None:
    """A decision edited after sealing is not exported as if it were proven."""
    copy = tmp_path / "audit.duckdb"
    for suffix in ("", ".wal"):
        if Path(f"{demo_home.audit_db}{suffix}").exists():
            shutil.copy(f"{demo_home.audit_db}{suffix}", f"{copy}{suffix}")
    key = checkpoint_signer(demo_home, AuditKeySettings())
    with duckdb.connect(str(copy)) as insider:
        insider.execute("UPDATE decisions SET score = score + 1 WHERE partition_date = ?", [TO])
    # exported as `hitl audit export` does: a session reading the folded segments too
    refused = pytest.raises(BundleError, match="decisions rows in scope are not in the audit log")
    with reading_session(copy, Segments(demo_home.segments_dir)) as con, refused:
        export_bundle(con, BundleScope(_day(FROM), _day(TO)), tmp_path / "b", key)


def _day(text: str):
    from datetime import date

    return date.fromisoformat(text)
