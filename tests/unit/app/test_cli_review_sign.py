"""`hitl review sign FILE --key KEY`: the detached signature intake verifies, for people who do
not use `ssh-keygen -Y sign` themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.home import HitlPaths
from hitl_gate.identity.keys import parse_public_key
from hitl_gate.identity.signatures import VERDICTS, claimed_key, verify
from tests.key_pool import PooledKeyring


def test_sign_writes_a_signature_intake_accepts(
    hitl_paths: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = PooledKeyring(tmp_path / "keys")
    key.folder.mkdir()
    returned = tmp_path / "cases.xlsx"
    returned.write_bytes(b"the returned workbook's bytes")
    main(["--home", str(hitl_paths.home), "review", "sign", str(returned), "--key",
          str(key.private("ana"))])  # fmt: skip
    assert "cases.xlsx.sig: signed" in capsys.readouterr().out
    signature = (tmp_path / "cases.xlsx.sig").read_text()
    public = parse_public_key(key.public_line("ana"))
    assert claimed_key(signature) == public
    verify(returned.read_bytes(), signature, VERDICTS, public)  # raises if not valid


def test_sign_without_a_usable_key_says_so(hitl_paths: HitlPaths, tmp_path: Path) -> None:
    returned = tmp_path / "cases.xlsx"
    returned.write_bytes(b"x")
    with pytest.raises(SystemExit, match="could not sign"):
        main(["--home", str(hitl_paths.home), "review", "sign", str(returned), "--key",
              str(tmp_path / "no-such-key")])  # fmt: skip
    assert not (tmp_path / "cases.xlsx.sig").exists()
