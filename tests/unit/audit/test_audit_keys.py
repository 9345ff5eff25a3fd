"""Key separation, attacked as an insider would: the checkpoint key lives in a real SoftHSM2
token and cannot be read out of it; no audit database session can read the token's files or a
key file; verify trusts only a pinned key and its signed hand-overs, never a key in the home."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hitl_gate.app.cli import main
from hitl_gate.audit.keys import (
    checkpoint_signer,
    load_or_create_signing_key,
    public_key_hex,
    token_config,
)
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.signer import Pkcs11Signer
from hitl_gate.audit.trust import (
    TrustAnchor,
    TrustAnchorError,
    handover_file,
    load_trust_anchor,
    sign_handover,
)
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, insert_new_rows
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import AuditKeySettings
from pipelines.resources import build_resources
from tests.blank_audit_db import blank_if_missing
from tests.fork_server import FORK_SERVER_GROUP, shared_forkserver
from tests.unit.audit.tamper_home import add_row
from tests.unit.audit.token_user import public_key_of

pytestmark = [
    pytest.mark.skipif(
        shutil.which("softhsm2-util") is None, reason="SoftHSM2 (package softhsm2) not installed"
    ),
    pytest.mark.slow,  # tokens made by `softhsm2-util` (a subprocess) and SoftHSM2 signing
]


def _executions(start: int, count: int, action: str = "approve") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "domain": ["consumer_credit"] * count,
            "case_id": [f"C{i:05d}" for i in range(start, start + count)],
            "partition_date": [date(2018, 1, 2)] * count,
            "action": [action] * count,
            "decided_by": ["policy"] * count,
            "route": ["auto_approve"] * count,
            "reason_codes": [["R01"]] * count,
            "run_id": ["r"] * count,
            "executed_at": [datetime(2018, 1, 2, 12, tzinfo=UTC)] * count,
        }
    )


def _home(tmp_path: Path, name: str = "home") -> HitlPaths:
    return HitlPaths.at(tmp_path / name)


def _seal(paths: HitlPaths, signer: object, start: int, count: int, run: str) -> None:
    with audit_connection(blank_if_missing(paths.audit_db)) as con:
        insert_new_rows(con, "executions", _executions(start, count))
        seal_run(con, run, signer, paths.checkpoints_dir)  # type: ignore[arg-type]


def _verify(paths: HitlPaths, anchor: str | TrustAnchor | None):  # noqa: ANN202
    with audit_connection(paths.audit_db, read_only=True) as con:
        return verify_audit(con, paths.checkpoints_dir, anchor)


def test_the_token_key_signs_but_cannot_be_read_out(tmp_path: Path) -> None:
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    paths = _home(tmp_path)
    signer = checkpoint_signer(paths, AuditKeySettings())
    assert isinstance(signer, Pkcs11Signer)
    signature = signer.sign(b"checkpoint")
    signer.public_key().verify(signature, b"checkpoint")  # plain Ed25519
    again = checkpoint_signer(paths, AuditKeySettings())  # the same key, kept in the token
    assert public_key_hex(again) == public_key_hex(signer)
    other = checkpoint_signer(_home(tmp_path, "other"), AuditKeySettings())
    assert public_key_hex(other) != public_key_hex(signer)  # a token per home
    with signer._session() as session:  # the insider holding the PIN opens the token
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=signer.config.key_label)
        assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]
    assert not (paths.secrets_dir / "audit_ed25519.key").exists()  # no key file is made


def _key_files(paths: HitlPaths) -> list[Path]:
    """Every file an attacker would want: the token's objects, its PINs, the legacy key."""
    files = [p for p in (paths.secrets_dir / "softhsm").rglob("*") if p.is_file()]
    assert any(p.suffix == ".object" for p in files) and any(p.name == "user.pin" for p in files)
    return [*files, paths.audit_key_file]


ATTACKS = (
    "SELECT content FROM read_blob('{path}')",
    "SELECT content FROM read_text('{path}')",
    "SELECT * FROM read_blob('{folder}/**')",
    "SELECT * FROM read_csv('{path}', header = false, columns = {{'a': 'BLOB'}})",
    "SELECT * FROM read_blob('{warehouse}/../secrets/softhsm/user.pin')",
    "ATTACH '{folder}/stolen.duckdb' AS stolen",
    "COPY (SELECT 1) TO '{folder}/dropped.csv'",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "INSTALL httpfs",
)


@pytest.fixture(scope="module")
def keyed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home sealed with its token's key, an old home's key file still there and a stage's
    Parquet in the warehouse, built once; each attack gets a copy (`_home(copy)`)."""
    root = tmp_path_factory.mktemp("keyed")
    paths = _home(root)
    _seal(paths, checkpoint_signer(paths, AuditKeySettings()), 0, 3, "r1")
    load_or_create_signing_key(paths.audit_key_file)  # an old home's key file, still there
    paths.warehouse.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"a": [1]}).write_parquet(paths.warehouse / "stage.parquet")
    return root


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_pipeline_database_session_cannot_read_the_key(
    keyed_home: Path, tmp_path: Path, attack: str
) -> None:
    shutil.copytree(keyed_home, tmp_path, dirs_exist_ok=True)  # modes (0600, 0700) kept
    paths = _home(tmp_path)
    targets = _key_files(paths)
    with duckdb.connect() as outsider:  # without the restriction, the attack would work
        assert outsider.execute(f"SELECT content FROM read_blob('{targets[0]}')").fetchall()
    audit_db = build_resources(paths)["audit_db"]
    with audit_db.connect() as con:  # type: ignore[attr-defined]
        # The pipeline's own file reads still work (routing streams the warehouse's Parquet).
        parquet = str(paths.warehouse / "stage.parquet")
        assert con.execute("SELECT a FROM read_parquet(?)", [parquet]).fetchall() == [(1,)]
        for path in targets:
            sql = attack.format(path=path, folder=path.parent, warehouse=paths.warehouse)
            with pytest.raises((duckdb.PermissionException, duckdb.InvalidInputException)):
                con.execute(sql).fetchall()
    with audit_connection(paths.audit_db, read_only=True) as con:  # CLI sessions: no files
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_parquet(?)", [parquet]).fetchall()
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT content FROM read_blob('{targets[0]}')").fetchall()


def test_a_replaced_key_and_resigned_history_fail_against_the_pinned_key(
    tmp_path: Path,
) -> None:
    """The insider deletes the token, lets a new one be made, rewrites history, re-signs all."""
    paths = _home(tmp_path)
    keys = AuditKeySettings()
    real = checkpoint_signer(paths, keys)
    pinned = public_key_hex(real)
    _seal(paths, real, 0, 5, "r1")
    _seal(paths, real, 5, 4, "r2")
    assert _verify(paths, pinned).ok

    shutil.rmtree(paths.secrets_dir / "softhsm")  # the home's key replaced...
    forger = checkpoint_signer(paths, keys)
    assert public_key_hex(forger) != pinned
    with audit_connection(paths.audit_db) as con:  # ...and the whole history rewritten
        con.execute("UPDATE executions SET action = 'decline' WHERE case_id = 'C00002'")
        for table in ("audit_log", "audit_log_index", "audit_seen_rows", "audit_checkpoints"):
            con.execute(f"DELETE FROM {table}")
    shutil.rmtree(paths.checkpoints_dir)
    _seal(paths, forger, 9, 1, "forged")

    self_consistent = _verify(paths, None)
    assert self_consistent.ok  # it is consistent, and verify says that is all it checked
    assert "SELF-CONSISTENT ONLY" in self_consistent.summary()
    assert "OK" not in self_consistent.summary().splitlines()[0]
    report = _verify(paths, pinned)
    assert not report.ok
    assert "signed by another key" in report.summary() and pinned[:16] in report.summary()


def test_verify_never_takes_the_key_from_the_home(tmp_path: Path, capsys) -> None:
    """`hitl audit verify` with no anchor configured: self-consistency, said plainly; with a
    key file in the home it still does not trust it; an anchor inside the home is refused."""
    paths = _home(tmp_path)
    signer = checkpoint_signer(paths, AuditKeySettings())
    _seal(paths, signer, 0, 3, "r1")
    load_or_create_signing_key(paths.audit_key_file)  # a key file lying in the home
    main(["--home", str(paths.home), "audit", "verify"])
    assert "SELF-CONSISTENT ONLY" in capsys.readouterr().out
    main(["--home", str(paths.home), "audit", "verify", "--public-key", public_key_hex(signer)])
    assert "OK (signed by the trusted key" in capsys.readouterr().out
    wrong = public_key_hex(Ed25519PrivateKey.generate())
    with pytest.raises(SystemExit) as exit_:
        main(["--home", str(paths.home), "audit", "verify", "--public-key", wrong])
    assert exit_.value.code == 1

    inside = paths.home / "trusted.pub"
    inside.write_text(public_key_hex(signer) + "\n")
    with pytest.raises(TrustAnchorError, match="inside the home"):
        load_trust_anchor(AuditKeySettings(trusted_key_file=inside), paths)
    outside = tmp_path / "anchor" / "trusted.pub"
    outside.parent.mkdir()
    outside.write_text(f"# checkpoint key of {paths.home}\n{public_key_hex(signer)}\n")
    anchor = load_trust_anchor(AuditKeySettings(trusted_key_file=outside), paths)
    assert anchor is not None and _verify(paths, anchor).ok


def _rotated(tmp_path: Path) -> tuple[HitlPaths, str, object, object]:
    """A home whose checkpoints were signed by key cp-1, then handed over to cp-2."""
    paths = _home(tmp_path)
    keys = AuditKeySettings(key_label="cp-1")
    old = checkpoint_signer(paths, keys)
    new = checkpoint_signer(paths, replace(keys, key_label="cp-2"))
    _seal(paths, old, 0, 4, "r1")
    with audit_connection(paths.audit_db) as con:
        sign_handover(con, old, new, paths.checkpoints_dir)
    _seal(paths, new, 4, 3, "r2")
    return paths, public_key_hex(old), old, new


def test_rotation_is_a_signed_hand_over_followed_from_the_pinned_key(tmp_path: Path) -> None:
    paths, pinned, old, new = _rotated(tmp_path)
    report = _verify(paths, pinned)
    assert report.ok, report.summary()
    assert not _verify(paths, public_key_hex(new)).ok  # the new key alone does not cover r1

    _seal(paths, old, 7, 2, "r3-old-key")  # the retired key keeps signing: refused
    report = _verify(paths, pinned)
    assert not report.ok and "signed by another key" in report.summary()


def test_a_deleted_or_forged_hand_over_is_caught(tmp_path: Path) -> None:
    paths, pinned, old, new = _rotated(tmp_path)
    after = 4
    with audit_connection(paths.audit_db) as con:  # deleted from the database only
        con.execute("DELETE FROM audit_key_handovers")
    assert "only in the checkpoint folder" in _verify(paths, pinned).summary()
    handover_file(paths.checkpoints_dir, after).unlink()  # and from the folder: r2 untrusted
    report = _verify(paths, pinned)
    assert not report.ok and "signed by another key" in report.summary()

    forger = Ed25519PrivateKey.generate()  # a hand-over made without the old key
    with audit_connection(paths.audit_db) as con:
        con.execute("DELETE FROM audit_checkpoints WHERE first_seq > ?", [after])
        sign_handover(con, forger, new, paths.checkpoints_dir)
    report = _verify(paths, pinned)
    assert not report.ok and "not the key then trusted" in report.summary()


def test_a_hand_over_with_a_swapped_new_key_is_caught(tmp_path: Path) -> None:
    """Editing the named new key (DB and file alike) breaks both signatures."""
    paths, pinned, _, _ = _rotated(tmp_path)
    attacker = public_key_hex(Ed25519PrivateKey.generate())
    with audit_connection(paths.audit_db) as con:
        con.execute("UPDATE audit_key_handovers SET new_public_key = ?", [attacker])
    path = handover_file(paths.checkpoints_dir, 4)
    text = path.read_text()
    path.write_text(text.replace(text.split('"new_public_key": "')[1][:64], attacker))
    report = _verify(paths, pinned)
    assert not report.ok and "bad signature of the old key" in report.summary()


def test_a_real_hsm_is_configuration(tmp_path: Path) -> None:
    """Another PKCS#11 module: no SoftHSM2 folder is managed and no key is generated; the PIN
    comes from the deployment (an unknown token is reported by name, nothing is created)."""
    paths = _home(tmp_path)
    keys = AuditKeySettings(pkcs11_module="/opt/hsm/libvendor-pkcs11.so", token_label="prod")
    config = token_config(paths, keys, pin="1234")
    assert config.softhsm_dir is None and not config.create_key
    with pytest.raises(Exception, match="libvendor-pkcs11"):
        Pkcs11Signer(config).sign(b"x")
    assert not (paths.secrets_dir / "softhsm").exists()


@pytest.mark.slow
@pytest.mark.xdist_group(FORK_SERVER_GROUP)  # forked from that worker's forkserver
def test_concurrent_first_uses_make_one_key(tmp_path: Path) -> None:
    """A multiprocess run's steps sealing at once on a new home share one token and one key
    (processes forked from a server that imported the libraries, as the multiprocess
    executor's steps are, none of which has used a token before)."""
    from concurrent.futures import ProcessPoolExecutor

    home = str(tmp_path / "home")
    with ProcessPoolExecutor(max_workers=4, mp_context=shared_forkserver()) as pool:
        keys = list(pool.map(public_key_of, [home] * 6))
    assert len(set(keys)) == 1
    assert keys[0] == public_key_of(home)


def test_an_old_home_moves_from_its_key_file_to_the_token_by_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hitl audit rotate-key` hands over from the legacy key file to a token key; verify,
    pinned to the old key, follows the hand-over; `hitl audit public-key` shows the new key."""
    paths = _home(tmp_path)
    home = ["--home", str(paths.home)]
    for name in ("HITL_AUDIT_SIGNER", "HITL_AUDIT_KEY_LABEL", "HITL_AUDIT_TRUSTED_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HITL_AUDIT_SIGNER", "key_file")
    old = public_key_hex(load_or_create_signing_key(paths.audit_key_file))
    # Decisions, not executions: the command-line seal refuses executions no step sealed.
    with audit_connection(paths.audit_db) as con:
        for n in range(3):
            add_row(con, "decisions", n, domain="consumer_credit", case_id=f"C{n:05d}")
    main([*home, "audit", "seal"])
    main([*home, "audit", "rotate-key", "--new-key-label", "cp-2027"])
    monkeypatch.delenv("HITL_AUDIT_SIGNER")
    monkeypatch.setenv("HITL_AUDIT_KEY_LABEL", "cp-2027")
    with audit_connection(paths.audit_db) as con:
        for n in range(3, 5):
            add_row(con, "decisions", n, domain="consumer_credit", case_id=f"C{n:05d}")
    main([*home, "audit", "seal"])
    capsys.readouterr()
    main([*home, "audit", "public-key"])
    new = capsys.readouterr().out.strip()
    assert new != old and len(new) == 64
    monkeypatch.setenv("HITL_AUDIT_TRUSTED_KEY", old)
    main([*home, "audit", "verify"])
    assert "OK (signed by the trusted key of HITL_AUDIT_TRUSTED_KEY" in capsys.readouterr().out
    with audit_connection(paths.audit_db, read_only=True) as con:
        keys = con.execute("SELECT public_key FROM audit_checkpoints ORDER BY last_seq").fetchall()
    assert [k for (k,) in keys] == [old, new]


def _sign_in_child(home: str, queue) -> None:  # noqa: ANN001
    signer = checkpoint_signer(HitlPaths.at(home), AuditKeySettings())
    signature = signer.sign(b"child")
    signer.public_key().verify(signature, b"child")
    queue.put(public_key_hex(signer))


@pytest.mark.slow
def test_a_forked_step_process_signs_with_the_same_token_key(tmp_path: Path) -> None:
    """Dagster's and the recovery test's forked children re-initialise the library first."""
    import multiprocessing

    home = str(tmp_path / "home")
    parent = public_key_of(home)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_sign_in_child, args=(home, queue))
    child.start()
    assert queue.get(timeout=60) == parent
    child.join()
    assert child.exitcode == 0
    assert public_key_of(home) == parent  # the parent's library still works
