"""`hitl people ...`: every change a signed act, refusals in one line, the list honest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from hitl_gate.identity.store import load_registry
from tests.signed_acts_fixtures import keyring

pytestmark = pytest.mark.slow  # ssh-keygen


def test_people_commands_are_signed_acts_with_one_line_refusals(
    hitl_paths: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keyring(tmp_path)
    home = ["--home", str(hitl_paths.home), "people"]

    def run(*argv: str, key: str = "root") -> None:
        main([*home, *argv, "--signing-key", str(keys.private(key))])

    def pub(name: str) -> str:
        return f"{keys.private(name)}.pub"

    with pytest.raises(SystemExit, match="REFUSED: .* the first administrator must sign their own"):
        run("add", "root", "--name", "Root", "--grant", "*:admin", "--public-key", pub("root"),
            key="ann")  # fmt: skip
    with pytest.raises(SystemExit, match=r"ann: the first person added must hold \*:admin"):
        run("add", "ann", "--name", "Ann", "--public-key", pub("ann"), key="ann")
    run("add", "root", "--name", "Root", "--grant", "*:admin", "--public-key", pub("root"))
    with pytest.raises(SystemExit, match="is a private key; give the public key"):
        run("add", "ann", "--name", "Ann", "--public-key", str(keys.private("ann")))
    with pytest.raises(SystemExit, match="not a grant"):
        run("add", "ann", "--name", "Ann", "--public-key", pub("ann"), "--grant", "admin")
    run("add", "ann", "--name", "Ann", "--public-key", pub("ann"), "--grant",
        "consumer_credit:analyst[consumer_credit_review]")  # fmt: skip
    with pytest.raises(SystemExit, match="ann is not an administrator"):
        run("add", "bob", "--name", "Bob", "--public-key", pub("bob"), key="ann")
    expired = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    run("add", "bob", "--name", "Bob", "--public-key", pub("bob"), "--valid-before", expired)
    with pytest.raises(SystemExit, match="already registered to ann: one key, one person"):
        run("add", "ann2", "--name", "Ann again", "--public-key", pub("ann"))
    run("add-key", "ann", "--public-key", pub("ann-laptop"))
    run("rotate", "ann", "--old", keys.fingerprint("ann"), "--public-key", pub("ann-new"))
    run("revoke", "ann", "--key", keys.fingerprint("ann-laptop"))
    run("grant", "bob", "--grant", "lending_club:loan_officer")
    run("availability", "bob", "--daily-capacity", "30",
        "--unavailable", "2030-01-01T00:00+00:00/2030-01-08T00:00+00:00")  # fmt: skip
    with pytest.raises(SystemExit, match="expected START/END"):
        run("availability", "bob", "--unavailable", "2030-01-01")
    run("revoke", "bob")
    capsys.readouterr()
    main([*home, "list"])
    listing = capsys.readouterr().out
    assert f"{keys.fingerprint('ann')} revoked" in listing
    assert f"{keys.fingerprint('ann-laptop')} revoked" in listing
    assert f"{keys.fingerprint('ann-new')} valid" in listing
    assert f"{keys.fingerprint('bob')} expired" in listing
    assert "bob (Bob) REVOKED: lending_club:loan_officer; 30/day" in listing
    assert "consumer_credit:analyst[consumer_credit_review]" in listing
    main([*home, "list", "--allowed-signers"])
    signers = capsys.readouterr().out.splitlines()
    assert len(signers) == 5 and all('namespaces="hitl-gate-verdicts"' in s for s in signers)
    assert any(s.startswith("bob ") and "valid-before=" in s for s in signers)
    with audit_connection(hitl_paths.audit_db, read_only=True) as con:
        registry = load_registry(con)
        kinds = [r[0] for r in con.execute("SELECT kind FROM people_acts ORDER BY seq").fetchall()]
    assert kinds == ["add_person", "add_person", "add_person", "add_key", "rotate_key",
                     "revoke_key", "set_grants", "set_availability", "revoke_person"]  # fmt: skip
    assert registry.people["bob"].daily_capacity == 30


def test_retention_apply_without_a_signature_removes_nothing(hitl_paths: HitlPaths) -> None:
    with audit_connection(hitl_paths.audit_db):
        pass
    with pytest.raises(SystemExit, match="REFUSED: retention apply removes personal data: sign"):
        main(["--home", str(hitl_paths.home), "--domain", "consumer_credit", "retention", "apply"])
