"""Reading what per-run segments sealed: the auditors' views, the regulator bundle, key
hand-overs across segments and global checkpoints (`run_segments`, `bundle_segments`).

The same small scenario (every sealed table, then a second run of decisions and executions)
is sealed twice: on the single chain (`HITL_AUDIT_SEGMENTS` off) and through per-run
segments (on). What a case's history, the events listing and a bundle show must be the same
either way, apart from the columns that say which chain holds an entry. Then attacked as an
insider would: the views' copy of segment entries edited, deleted or added to; a segment
entry or a global checkpoint edited inside a bundle and the manifest re-signed; a key hand-over
forged, or a run sealed with a key never handed over.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hitl_gate.app.cli import main
from hitl_gate.audit import bundle, bundle_check, chain, run_segments
from hitl_gate.audit.bundle import BundleScope, export_bundle
from hitl_gate.audit.bundle_segments import BundleError
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.run_seal import (
    folded_segments,
    global_stamp,
    readable_segments,
    reading_session,
    seal_with_segment,
)
from hitl_gate.audit.run_segments import Segments, attached_segment
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.trust import sign_handover
from hitl_gate.audit.witness import WitnessConfig, stamp
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import TSA_ENV, TSA_ROOTS_ENV
from tests.blank_audit_db import blank_if_missing
from tests.fixed_place import put_back
from tests.unit.audit.local_tsa import local_tsa
from tests.unit.audit.tamper_home import DOMAIN, _first_run, add_rows

pytestmark = pytest.mark.slow  # several homes sealed and verified through the CLI

SCOPE = BundleScope(date(2026, 1, 1), date(2026, 1, 3))
HISTORY = (
    "SELECT domain, case_id, event_type, run_id, content_digest FROM case_history ORDER BY ALL"
)
EVENTS = "SELECT event_type, entity_key, content_digest, run_id FROM audit_events ORDER BY ALL"


class Home:
    """A home sealed on the single chain or through segments; its key kept outside it."""

    def __init__(self, root: Path, segmented: bool, tsa_url: str | None = None) -> None:
        self.root = root
        self.paths = HitlPaths.at(root / "home")
        self.segments = Segments(self.paths.segments_dir)
        self.segmented = segmented
        self.tsa_url = tsa_url

    def key(self, name: str = "audit") -> Any:
        return load_or_create_signing_key(self.root / "keys" / f"{name}.key")

    def connect(self, **options: Any) -> Any:
        """A writer connection (`options`: as `audit_connection` takes them, e.g. the files
        the run's pick may attach)."""
        return audit_connection(blank_if_missing(self.paths.audit_db), **options)

    def seal(self, run_id: str, key: Any | None = None) -> None:
        key = key or self.key()
        witness = WitnessConfig(self.paths.witness_dir, self.tsa_url)
        if not self.segmented:
            with self.connect() as con:
                seal_run(con, run_id, key, self.paths.checkpoints_dir, witness=witness)
            return
        seal_with_segment(
            self.connect, self.segments, f"{DOMAIN}.{run_id}", run_id, key,
            self.paths.checkpoints_dir, witness=witness, memory_limit=None, owned={},
        )  # fmt: skip

    def rows(self, sql: str) -> list[tuple]:
        """`sql` in a reading session: the views list what segments sealed, read in place."""
        with reading_session(self.paths.audit_db, self.segments) as con:
            return con.execute(sql).fetchall()

    def verify(self, capsys: pytest.CaptureFixture[str], key: Any | None = None) -> str:
        """`hitl audit verify` pinned to `key` (default: the home's first key): its output,
        prefixed with the exit code."""
        capsys.readouterr()
        pinned = public_key_hex(key or self.key())
        try:
            main(["--home", str(self.paths.home), "audit", "verify", "--public-key", pinned])
            code = 0
        except SystemExit as exited:
            code = int(exited.code or 0)
        return f"exit {code}\n{capsys.readouterr().out}"

    def export(self, out: Path, key: Any | None = None) -> Path:
        with reading_session(self.paths.audit_db, self.segments) as con:
            export_bundle(con, SCOPE, out, key or self.key(), self.segments)
        return out


def _second_run(home: Home) -> None:
    with home.connect() as con:
        cases = [(i, {"domain": DOMAIN, "case_id": f"C{i}"}) for i in range(7, 10)]
        add_rows(con, "decisions", [(i, case | {"route": "auto_decline"}) for i, case in cases])
        add_rows(con, "executions", [(i, case | {"action": "decline"}) for i, case in cases])


def _first_sealed(root: Path, segmented: bool) -> Home:
    """The scenario's first run, sealed."""
    home = Home(root, segmented)
    with home.connect() as con:
        _first_run(con)
    home.seal("run-1")
    return home


def _second_sealed(home: Home) -> Home:
    """The scenario's second run on `home` (its first sealed), sealed."""
    _second_run(home)
    home.seal("run-2")
    return home


@pytest.fixture(scope="module")
def templates(
    tmp_path_factory: pytest.TempPathFactory, first_run_template: Path
) -> dict[bool, Path]:
    """The scenario sealed both ways, built once; each test gets copies. The segmented one
    goes on from a copy of `first_run_template` (the same first run, sealed the same way), as
    the hand-over tests go on from theirs, instead of sealing that first run again."""
    single = tmp_path_factory.mktemp("single")
    _second_sealed(_first_sealed(single, segmented=False))
    segmented = tmp_path_factory.mktemp("segmented")
    shutil.copytree(first_run_template, segmented, dirs_exist_ok=True)
    _second_sealed(Home(segmented, segmented=True))
    return {False: single, True: segmented}


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each test's copies of the templates are put back (`tests.fixed_place`: the same
    audit file paths for the module's tests, so kept DuckDB instances rather than new ones)."""
    return tmp_path_factory.mktemp("segment-places")


@pytest.fixture
def homes(templates: dict[bool, Path], places: Path) -> dict[bool, Home]:
    return {
        segmented: Home(put_back(root, places / str(segmented)), segmented)
        for segmented, root in templates.items()
    }


@pytest.fixture
def segmented(homes: dict[bool, Home]) -> Home:
    return homes[True]


def test_history_and_events_list_the_same_with_segments_on_and_off(
    homes: dict[bool, Home],
) -> None:
    off, on = homes[False], homes[True]
    assert on.rows("SELECT count(*) FROM audit_segment_leaves") == [(2,)]
    assert off.rows(HISTORY) == on.rows(HISTORY)
    assert off.rows(EVENTS) == on.rows(EVENTS)
    decision = "SELECT count(segment_id), count(*) FROM case_history WHERE event_type = "
    assert on.rows(decision + "'decision'") == [(9, 9)]  # provenance: in a segment
    assert off.rows(decision + "'decision'") == [(0, 9)]
    assert on.rows(decision + "'execution'") == [(0, 9)]  # insert-once: the single chain
    # a case's history in order across both chains
    history = on.rows(
        "SELECT event_type, segment_id IS NOT NULL FROM case_history "
        f"WHERE domain = '{DOMAIN}' AND case_id = 'C7' ORDER BY recorded_at, seq"
    )
    assert sorted(history) == [("decision", True), ("execution", False)]


def test_the_replica_lists_segment_entries_too(segmented: Home) -> None:
    from hitl_gate.app.cli.sql_prompt import open_replica
    from hitl_gate.audit.replica import current_manifest, refresh_replica
    from hitl_gate.audit.run_seal import readable_segments

    replica, segments = segmented.paths.replica_dir, segmented.segments
    decisions = "SELECT count(*) FROM case_history WHERE segment_id IS NOT NULL"
    # A refresh whose session may not attach the segments lists the leaves it left unread.
    with segmented.connect() as con:
        refresh_replica(con, replica, segments=segments)
    assert current_manifest(replica)["unread_leaves"] == [1, 2]  # type: ignore[index]
    with open_replica(replica) as con:
        assert con.execute(decisions).fetchall() == [(0,)]
    # The next one allowed the folded segments' files reads them in place, once each.
    with audit_connection(segmented.paths.audit_db, read_only=True) as con:
        folded = readable_segments(con, segments)
    with segmented.connect(attachable=folded) as con:
        refresh_replica(con, replica, segments=segments)
    first = current_manifest(replica)
    assert first is not None and first["unread_leaves"] == [], first
    with open_replica(replica) as con:
        assert con.execute(HISTORY).fetchall() == segmented.rows(HISTORY)
        assert con.execute(decisions).fetchall() == [(9,)]
    # Then linked while the leaf is unchanged, even by a session that may not attach them.
    with segmented.connect() as con:
        refresh_replica(con, replica, segments=segments)
    again = current_manifest(replica)
    assert again is not None and again["unread_leaves"] == []
    assert again["segment_leaves"] == first["segment_leaves"]
    part = next(iter(first["segment_leaves"]))
    assert (replica / "current" / part).stat().st_nlink >= 2  # the same file, linked
    with open_replica(replica) as con:
        assert con.execute(HISTORY).fetchall() == segmented.rows(HISTORY)
    assert len(segmented.rows("SELECT * FROM case_history WHERE segment_id IS NOT NULL")) == 9


def test_a_leaf_is_read_from_its_segment_under_a_memory_limit_of_its_own(
    segmented: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh reads each leaf under `LEAF_READ_MEMORY_LIMIT`, then restores the
    connection's: DuckDB's cache of a scan that reads each block once would otherwise fill the
    seal's 1 GB limit."""
    from hitl_gate.audit import replica
    from hitl_gate.audit.run_seal import readable_segments
    from hitl_gate.audit.seal import memory_limited

    shown = "SELECT current_setting('memory_limit')"
    seen: list[str] = []
    write = replica._write_rows

    def recording(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> None:
        if replica.SEGMENT_ALIAS in query:
            seen.append(con.execute(shown).fetchall()[0][0])
        write(con, query, target)

    monkeypatch.setattr(replica, "_write_rows", recording)
    with audit_connection(segmented.paths.audit_db, read_only=True) as con:
        folded = readable_segments(con, segmented.segments)
    with duckdb.connect() as scratch:  # how DuckDB shows the limit
        scratch.execute(f"SET memory_limit = '{replica.LEAF_READ_MEMORY_LIMIT}'")
        leaf_limit = scratch.execute(shown).fetchall()[0][0]
    with segmented.connect(attachable=folded) as con, memory_limited(con, "1GB"):
        outer = con.execute(shown).fetchall()[0][0]
        replica.refresh_replica(con, segmented.paths.replica_dir, segments=segmented.segments)
        after = con.execute(shown).fetchall()[0][0]
    assert seen == [leaf_limit, leaf_limit]  # the two folded leaves
    mib = [float(str(x).removesuffix(" MiB")) for x in (outer, after, leaf_limit)]
    assert abs(mib[0] - mib[1]) < 0.15 < mib[0] - mib[2]  # restored (shown to a tenth)


def _copy_edited(home: Home) -> str:
    with home.connect() as con:
        seq, segment = con.execute(
            "SELECT seq, segment_id FROM audit_segment_log ORDER BY segment_id, seq LIMIT 1"
        ).fetchall()[0]
        con.execute(
            'UPDATE audit_segment_log SET entry = replace(entry, \'"digest":"\', '
            '\'"digest":"0\') WHERE seq = ? AND segment_id = ?',
            [seq, segment],
        )
    return f"segment {segment}: audit_segment_log entry seq {seq}: differs from the entry"


def _copy_deleted(home: Home) -> str:
    with home.connect() as con:
        (segment,) = con.execute("SELECT min(segment_id) FROM audit_segment_log").fetchall()[0]
        con.execute("DELETE FROM audit_segment_log WHERE seq = 2 AND segment_id = ?", [segment])
    return f"segment {segment}: audit_segment_log entry seq 2: missing from the copy"


def _copy_added(home: Home) -> str:
    with home.connect() as con:
        con.execute(
            "INSERT INTO audit_segment_log SELECT 'forged', seq, entry_hash, entry "
            "FROM audit_segment_log"
        )
    return "entries of segment forged, which no leaf names (added)"


def _copy_duplicated(home: Home) -> str:
    with home.connect() as con:
        con.execute("INSERT INTO audit_segment_log SELECT * FROM audit_segment_log LIMIT 1")
    return "audit_segment_log: 1 entries copied twice (added)"


def _legacy_copy(home: Home) -> None:
    """What folds made before 2026-12-06 left behind: every folded segment's entries copied
    into `audit_segment_log` of the global database."""
    with audit_connection(home.paths.audit_db, read_only=True) as con:
        folded = readable_segments(con, home.segments)
    with home.connect(attachable=folded) as con:
        for segment, last_seq in folded_segments(con):
            with attached_segment(con, home.segments, segment, "old_fold") as alias:
                con.execute(
                    f"INSERT INTO main.audit_segment_log SELECT ?, seq, entry_hash, entry "
                    f"FROM {alias}.main.audit_log WHERE seq <= ?",
                    [segment, last_seq],
                )


def test_the_fold_copies_no_entry_and_the_views_read_the_segments_in_place(
    segmented: Home,
) -> None:
    with audit_connection(segmented.paths.audit_db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM audit_segment_log").fetchall() == [(0,)]
        # a session that does not read the segments lists the single chain only
        assert con.execute("SELECT count(segment_id) FROM audit_events").fetchall() == [(0,)]
    assert segmented.rows("SELECT count(segment_id) FROM audit_events") == [(11,)]


@pytest.fixture(scope="module")
def legacy_template(templates: dict[bool, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The segmented scenario with the copy an earlier fold left (`_legacy_copy`), checked once:
    verify passes on it and the views list each entry once (read in place, the copy not
    listed twice); each attack on the copy gets a copy of this home."""
    root = Path(shutil.copytree(templates[True], tmp_path_factory.mktemp("legacy") / "home"))
    home = Home(root, segmented=True)
    history = home.rows(HISTORY)
    _legacy_copy(home)
    out, code = io.StringIO(), 0
    with contextlib.redirect_stdout(out):  # `Home.verify` without a test's capsys
        try:
            main(["--home", str(home.paths.home), "audit", "verify", "--public-key",
                  public_key_hex(home.key())])  # fmt: skip
        except SystemExit as exited:
            code = int(exited.code or 0)
    assert code == 0, out.getvalue()
    assert home.rows(HISTORY) == history
    return root


@pytest.mark.parametrize("attack", [_copy_edited, _copy_deleted, _copy_added, _copy_duplicated])
def test_a_copy_left_by_an_earlier_fold_is_checked_by_verify(
    legacy_template: Path, places: Path, attack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    segmented = Home(put_back(legacy_template, places / "legacy"), segmented=True)
    expected = attack(segmented)
    out = segmented.verify(capsys)
    assert out.startswith("exit 1") and expected in out, out


def test_entries_added_by_hand_for_a_segment_no_leaf_names_are_named(
    segmented: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    with segmented.connect() as con:
        con.execute(
            "INSERT INTO audit_segment_log SELECT 'forged', seq, entry_hash, entry FROM audit_log"
        )
    out = segmented.verify(capsys)
    assert out.startswith("exit 1") and "entries of segment forged, which no leaf names" in out


def _segment_entry_edited(home: Home) -> list[str]:
    """An insider edits a decision's entry in the folded segment file the views now read."""
    with duckdb.connect(str(home.segments.database(f"{DOMAIN}.run-1"))) as con:
        con.execute(
            'UPDATE audit_log SET entry = replace(entry, \'"digest":"\', \'"digest":"0\') '
            f'WHERE entry LIKE \'%"key":"{DOMAIN}/C1"%\''
        )
    return [
        f"decisions {DOMAIN}/C1: content matches no logged version (latest: entry seq 2",
        f"segment {DOMAIN}.run-1: entry 2: entry hash does not match its content (altered)",
    ]


def _segment_deleted(home: Home) -> list[str]:
    home.segments.database(f"{DOMAIN}.run-1").unlink()
    return [
        f"decisions {DOMAIN}/C1: not in the audit log",
        f"segment {DOMAIN}.run-1: its file is missing (deleted or moved)",
    ]


def _segment_replaced(home: Home) -> list[str]:
    """Replaced by another run's segment, signed by the real key."""
    shutil.copy(
        home.segments.database(f"{DOMAIN}.run-2"), home.segments.database(f"{DOMAIN}.run-1")
    )
    return [
        f"decisions {DOMAIN}/C1: not in the audit log",
        f"segment {DOMAIN}.run-1: leaf 1 (checkpoint at seq 8",
        "is no longer a checkpoint of the segment",
    ]


@pytest.mark.parametrize("attack", [_segment_entry_edited, _segment_deleted, _segment_replaced])
def test_a_segment_file_changed_after_its_fold_is_named_with_table_key_and_entry(
    segmented: Home, attack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The views, the replica and the bundle read folded segments in place (no copy in the
    global database): what an insider does to a segment file after its fold is named by
    verify, with the lineage rows it no longer backs."""
    expected = attack(segmented)
    out = segmented.verify(capsys)
    assert out.startswith("exit 1"), out
    for message in expected:
        assert message in out, out
    assert segmented.rows(HISTORY)  # the views still open: a missing segment is left out


def test_a_leaf_naming_a_path_instead_of_a_segment_is_named_not_followed(
    segmented: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    """A leaf's segment id edited into a path: verify and the reading session open nothing
    there; verify names the leaf."""
    with segmented.connect() as con:
        con.execute(
            "UPDATE audit_segment_leaves SET segment_id = '../../secrets' WHERE leaf_seq = 1"
        )
    out = segmented.verify(capsys)
    assert out.startswith("exit 1"), out
    assert "leaf 1 (segment ../../secrets): edited or out of order" in out, out
    assert "segment ../../secrets: not a segment id" in out, out
    listed = segmented.rows("SELECT DISTINCT segment_id FROM audit_events")
    assert set(listed) == {(None,), (f"{DOMAIN}.run-2",)}  # the other one only


def test_a_bundle_holds_the_same_rows_with_segments_on_and_off(
    homes: dict[bool, Home], tmp_path: Path
) -> None:
    bundles = {s: home.export(tmp_path / f"b{s}") for s, home in homes.items()}
    for segmented, out in bundles.items():
        report = bundle_check.check_bundle(out, public_key_hex(homes[segmented].key()))
        assert report.ok, report.summary()

    def rows(out: Path) -> dict[str, list[str]]:
        return {p.name: sorted(p.read_text().splitlines()) for p in (out / "lineage").glob("*l")}

    assert rows(bundles[False]) == rows(bundles[True])
    assert not (bundles[False] / "global").exists()
    on = bundles[True]
    index = (on / "lineage" / "index.csv").read_text().splitlines()
    assert any(line.startswith("decision,") and line.endswith(f"{DOMAIN}.run-1") for line in index)
    assert json.loads((on / "global" / "checkpoints.json").read_text())[-1]["leaves"] == 2
    assert list((on / "segments").iterdir())


def test_a_bundle_from_a_session_blind_to_the_segments_is_refused_for_that_reason(
    segmented: Home, tmp_path: Path
) -> None:
    """A plain connection lists no segment entry: every row a segment backs would look
    unsealed, so the export names the session as the cause instead of blaming the rows."""
    refused = pytest.raises(BundleError, match="reads none of the folded segments")
    with audit_connection(segmented.paths.audit_db, read_only=True) as con, refused:
        export_bundle(con, SCOPE, tmp_path / "b", segmented.key(), segmented.segments)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def _resign(out: Path, signer: Any) -> None:
    """What an insider holding the key does after editing a bundle: a fresh manifest."""
    manifest = json.loads((out / bundle_check.MANIFEST).read_text())
    manifest.pop("files")
    (out / bundle_check.SUMS).unlink()
    bundle._write_manifest(out, manifest, signer)


@pytest.fixture(scope="module")
def bundle_template(templates: dict[bool, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The segmented scenario's bundle, exported once (exporting reads the home and writes only
    the bundle's folder); each test gets a copy to edit."""
    out = tmp_path_factory.mktemp("segment-bundle") / "bundle"
    return Home(templates[True], segmented=True).export(out)


@pytest.fixture
def segment_bundle(
    segmented: Home, bundle_template: Path, tmp_path: Path
) -> Iterator[tuple[Home, Path]]:
    yield segmented, Path(shutil.copytree(bundle_template, tmp_path / "bundle"))


def test_a_segment_entry_edited_in_a_bundle_names_table_key_and_entry(
    segment_bundle: tuple[Home, Path],
) -> None:
    home, out = segment_bundle
    (entries,) = (out / "segments" / f"{DOMAIN}.run-1" / "log").glob("entries-*.tsv")
    lines = entries.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if f'"key":"{DOMAIN}/C1"' in line
                  and '"type":"decision"' in line)  # fmt: skip
    seq, stored, entry = lines[number].split("\t")
    lines[number] = "\t".join([seq, stored, entry.replace('"digest":"', '"digest":"0')])
    entries.write_text("\n".join(lines) + "\n")
    _resign(out, home.key())
    summary = bundle_check.check_bundle(out, public_key_hex(home.key())).summary()
    name = f"segments/{DOMAIN}.run-1/log/{entries.name}"
    assert f"{name} seq {seq}: entry hash differs (entry altered)" in summary, summary
    assert f"decisions {DOMAIN}/C1 (lineage/decision.jsonl line" in summary, summary
    assert f"differs from segment {DOMAIN}.run-1 entry seq {seq}" in summary, summary


def test_a_global_checkpoint_edited_or_resigned_in_a_bundle_is_named(
    segment_bundle: tuple[Home, Path],
) -> None:
    home, out = segment_bundle
    pinned = public_key_hex(home.key())
    path = out / "global" / "checkpoints.json"
    original = json.loads(path.read_text())
    edited = json.loads(path.read_text())
    edited[0]["tree_root"] = "0" * 64
    path.write_text(json.dumps(edited))
    _resign(out, home.key())
    summary = bundle_check.check_bundle(out, pinned).summary()
    where = "global/checkpoints.json global checkpoint 1"
    assert f"{where}: bad signature (key {pinned})" in summary, summary
    assert f"{where}: tree root differs from leaves 1..1" in summary
    assert "global checkpoint 2: does not link" in summary
    forger = Ed25519PrivateKey.generate()  # re-signed by a key of the insider's own
    edited[0] = original[0] | {"public_key": public_key_hex(forger)}
    edited[0]["signature"] = forger.sign(run_segments.global_message(edited[0])).hex()
    path.write_text(json.dumps(edited))
    keys = out / bundle_check.KEYS
    keys.write_text(keys.read_text() + public_key_hex(forger) + "\n")
    _resign(out, home.key())
    summary = bundle_check.check_bundle(out, pinned).summary()
    assert f"{where}: signed by an unexpected key {public_key_hex(forger)}, not {pinned}" in summary


def test_a_leaf_edited_in_a_bundle_is_named(segment_bundle: tuple[Home, Path]) -> None:
    home, out = segment_bundle
    path = out / "global" / "leaves.json"
    leaves = json.loads(path.read_text())
    leaves[0]["head_hash"] = "1" * 64
    path.write_text(json.dumps(leaves))
    _resign(out, home.key())
    summary = bundle_check.check_bundle(out, public_key_hex(home.key())).summary()
    assert f"global/leaves.json leaf 1 (segment {DOMAIN}.run-1): edited" in summary, summary
    assert f"segment {DOMAIN}.run-1 checkpoint" in summary and "is not a leaf" in summary


def test_the_standalone_checker_restates_the_global_rules_exactly() -> None:
    assert bundle_check.LEAF_FIELDS == run_segments.LEAF_FIELDS
    assert bundle_check.GLOBAL_FIELDS == run_segments.GLOBAL_FIELDS
    assert bundle_check.GLOBAL_FANOUT == chain.MERKLE_FANOUT
    leaf = {name: f"v{i}" for i, name in enumerate(run_segments.LEAF_FIELDS)}
    assert bundle_check.leaf_hash(leaf) == run_segments.leaf_hash(leaf)
    cp = {name: f"v{i}" for i, name in enumerate(run_segments.GLOBAL_FIELDS)} | {"signature": "ab"}
    assert bundle_check.global_message(cp) == run_segments.global_message(cp)
    assert bundle_check.global_hash(cp) == run_segments.global_hash(cp)


# Key hand-overs across segments and global checkpoints.


@pytest.fixture(scope="module")
def first_run_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A segmented home whose first run is sealed (its key under the root), built once."""
    root = tmp_path_factory.mktemp("first-run")
    _first_sealed(root, segmented=True)
    return root


@pytest.fixture
def first_run(first_run_template: Path, places: Path) -> Home:
    """A copy of `first_run_template` of the test's own (put back at the module's folder for
    it): the hand-over tests go on from there with keys of their own."""
    return Home(put_back(first_run_template, places / "first-run"), segmented=True)


def test_a_rotation_between_two_runs_segments_verifies_from_the_pinned_key(
    first_run: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = first_run
    old, new = home.key(), home.key("new")
    with home.connect() as con:
        record = sign_handover(con, old, new, home.paths.checkpoints_dir)
    assert record["after_global_seq"] == 1
    _second_run(home)
    home.seal("run-2", new)
    assert home.rows("SELECT global_seq, public_key FROM audit_global_checkpoints") == [
        (1, public_key_hex(old)), (2, public_key_hex(new)),
    ]  # fmt: skip
    out = home.verify(capsys, old)
    assert out.startswith("exit 0") and "2 run segments" in out, out
    assert home.verify(capsys, new).startswith("exit 1")  # the new key alone covers no run-1
    folder = home.export(tmp_path / "bundle", new)
    report = bundle_check.check_bundle(folder, public_key_hex(old))
    assert report.ok, report.summary()
    assert not bundle_check.check_bundle(folder, public_key_hex(new)).ok


def test_a_run_sealed_with_a_key_never_handed_over_is_named(
    first_run: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    home = first_run
    _second_run(home)
    stranger = home.key("stranger")
    home.seal("run-2", stranger)
    out = home.verify(capsys)
    assert out.startswith("exit 1")
    assert "global checkpoint 2: not signed by the pinned key or its hand-overs" in out, out
    assert f"segment {DOMAIN}.run-2: " in out and "signed by another key" in out, out


def test_a_forged_hand_over_is_not_followed_across_the_global_log(
    first_run: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    """An insider hands over from a key of their own (both signatures valid) to their key."""
    home = first_run
    forger, new = home.key("forger"), home.key("new")
    with home.connect() as con:
        sign_handover(con, forger, new, home.paths.checkpoints_dir)
    _second_run(home)
    home.seal("run-2", new)
    out = home.verify(capsys)
    assert out.startswith("exit 1")
    assert "not the key then trusted" in out, out
    assert "global checkpoint 2: not signed by the pinned key or its hand-overs" in out, out


def test_a_hand_over_whose_global_seq_was_edited_no_longer_verifies(
    first_run: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    """Moving the hand-over's global position (to re-date which global checkpoints the old
    key may sign) breaks both signatures: `after_global_seq` is signed."""
    home = first_run
    old, new = home.key(), home.key("new")
    with home.connect() as con:
        record = sign_handover(con, old, new, home.paths.checkpoints_dir)
        con.execute("UPDATE audit_key_handovers SET after_global_seq = 5")
    path = home.paths.checkpoints_dir / f"key-handover-{record['after_seq']:012d}.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"after_global_seq": 5}))
    out = home.verify(capsys)
    assert out.startswith("exit 1") and "bad signature of the old key" in out, out


# RFC 3161 time-stamps of the global checkpoints, from a real local TSA (OpenSSL's).


@pytest.fixture(scope="module")
def stamped_template(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Any]]:
    """A segmented home whose two runs' global checkpoints were time-stamped by a local TSA,
    sealed once; the TSA serves for the module's tests."""
    with local_tsa() as tsa:
        root = tmp_path_factory.mktemp("stamped")
        home = Home(root, segmented=True, tsa_url=tsa.url)
        with home.connect() as con:
            _first_run(con)
        home.seal("run-1")
        _second_run(home)
        home.seal("run-2")
        yield root, tsa


@pytest.fixture
def stamped(
    stamped_template: tuple[Path, Any], places: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Home, Any]:
    """A copy of the time-stamped home, the TSA configured (URL and pinned root) for
    `hitl audit verify` as for the pipeline."""
    template, tsa = stamped_template
    root = put_back(template, places / "stamped")
    monkeypatch.setenv(TSA_ENV, tsa.url)
    monkeypatch.setenv(TSA_ROOTS_ENV, str(tsa.roots))
    return Home(root, segmented=True, tsa_url=tsa.url), tsa


def test_global_checkpoints_are_time_stamped_and_verify_checks_the_stamps(
    stamped: tuple[Home, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    home, _ = stamped
    witness = home.paths.witness_dir
    assert sorted(p.name for p in witness.glob("global-*.tsr")) == [
        "global-000000000001.tsr", "global-000000000002.tsr",
    ]  # fmt: skip
    out = home.verify(capsys)
    assert out.startswith("exit 0"), out
    first, second = (global_stamp(witness, n) for n in (1, 2))
    first.write_bytes(second.read_bytes())  # a stamp of another checkpoint
    out = home.verify(capsys)
    assert out.startswith("exit 1"), out
    assert "global checkpoint 1: time-stamp global-000000000001.tsr: does not verify" in out
    first.unlink()
    out = home.verify(capsys)
    assert (
        "global checkpoint 1: its RFC 3161 time-stamp global-000000000001.tsr, recorded by the "
        "witness, is missing (deleted)" in out
    ), out


def test_a_stamp_from_another_tsa_fails_against_the_pinned_root(
    stamped: tuple[Home, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An insider's own TSA stamps the right message (e.g. to back-date it): its chain does
    not lead to the pinned root. Without a pinned root only the imprint is checked, and
    verify says so."""
    home, _ = stamped
    path = global_stamp(home.paths.witness_dir, 1)
    with home.connect() as con:
        checkpoint = con.execute("SELECT * FROM audit_global_checkpoints WHERE global_seq = 1")
        record = dict(zip([d[0] for d in con.description], checkpoint.fetchall()[0], strict=True))
    with local_tsa("insider") as other:
        stamp(other.url, run_segments.global_message(record), path)
    out = home.verify(capsys)
    assert out.startswith("exit 1"), out
    assert (
        "global checkpoint 1: time-stamp global-000000000001.tsr: does not verify against the "
        "TSA roots" in out
    ), out
    monkeypatch.delenv(TSA_ROOTS_ENV)
    out = home.verify(capsys)
    assert out.startswith("exit 0") and "imprint only: no TSA root pinned" in out, out


def test_the_trace_shows_the_same_case_with_its_entries_provenance(
    homes: dict[bool, Home],
) -> None:
    from hitl_gate.audit.trace import format_trace, trace_case

    traces = {
        s: trace_case(h.paths.audit_db, "C7", DOMAIN, segments=h.segments) for s, h in homes.items()
    }
    texts = {s: format_trace(t) for s, t in traces.items() if t is not None}
    before = {s: text.split("\nAudit log")[0] for s, text in texts.items()}
    assert before[False] == before[True]  # the case itself: the same either way
    assert "decision               run-2  entry 1 of segment demo.run-2" in texts[True]
    logged = {s: [(e["event_type"], e["run_id"], e["content_digest"]) for e in t["history"]]
              for s, t in traces.items() if t is not None}  # fmt: skip
    assert sorted(logged[False]) == sorted(logged[True]) and len(logged[True]) == 2
    assert "execution" in texts[True].split("of the single chain")[0]


def test_checkpoints_witnessed_before_a_tsa_was_configured_need_no_stamp(
    first_run: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = first_run  # run-1 sealed with no TSA configured
    with local_tsa() as tsa:
        home.tsa_url = tsa.url
        _second_run(home)
        home.seal("run-2")
        monkeypatch.setenv(TSA_ENV, tsa.url)
        monkeypatch.setenv(TSA_ROOTS_ENV, str(tsa.roots))
        names = [p.name for p in home.paths.witness_dir.glob("global-*.tsr")]
        assert names == ["global-000000000002.tsr"]
        out = home.verify(capsys)
    assert out.startswith("exit 0"), out
