"""Declaration files are read one way: errors name the file, in the caller's error type."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from hitl_gate.core.yaml_files import load_model, parse_yaml, read_yaml


class _Declared(BaseModel):
    name: str
    size: int = 1


class _DeclarationError(ValueError):
    pass


def test_a_valid_file_loads_as_its_model(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("name: a\nsize: 3\n", encoding="utf-8")
    assert load_model(path, _Declared, "thing", _DeclarationError) == _Declared(name="a", size=3)
    assert load_model(path, _Declared, "thing", _DeclarationError, size=5).size == 5
    assert read_yaml(path, "thing", _DeclarationError) == {"name": "a", "size": 3}


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(_DeclarationError, match=r"missing\.yaml: cannot read thing"):
        read_yaml(missing, "thing", _DeclarationError)


def test_a_syntax_error_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(_DeclarationError, match=r"bad\.yaml: cannot read thing"):
        load_model(path, _Declared, "thing", _DeclarationError)
    with pytest.raises(_DeclarationError, match="inline.yaml: cannot read policy"):
        parse_yaml("a: [", "inline.yaml", "policy", _DeclarationError)


@pytest.mark.parametrize("text", ["size: not-a-number\nname: a\n", "- a list\n", ""])
def test_a_file_that_does_not_match_its_model_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(_DeclarationError, match=r"wrong\.yaml: invalid thing"):
        load_model(path, _Declared, "thing", _DeclarationError)
