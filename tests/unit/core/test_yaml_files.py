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


SHIPPED = sorted((Path(__file__).parents[3] / "domains").glob("*/*.yaml"))
TRICKY = [
    "a: &x {b: [1, 2.5, null, ~, yes, no, on, 0o17, 0x1f, 1e3, .inf]}\nc: *x\nd: 2018-01-05\n",
    "e: 2018-01-05T10:00:00Z\nf: !!str 12\ng: |\n  two\n  lines\nh: >-\n  folded\n  text\n",
    "? complex key\n: value\nduplicate: 1\nduplicate: 2\n",
    "- 'single ''quoted'''\n- \"double \\u00e9\"\n- \\t tab-led\n",
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_declaration_reads_as_the_python_parser_reads_it(path: Path) -> None:
    import yaml

    text = path.read_text(encoding="utf-8")
    assert parse_yaml(text, path, "thing", _DeclarationError) == yaml.safe_load(text)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_yaml_reads_as_the_python_parser_reads_it(text: str) -> None:
    import yaml

    assert parse_yaml(text, "t.yaml", "thing", _DeclarationError) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "name: [unclosed\n",
        "a: b: c\n",
        "x: !!python/object/apply:os.system ['true']\n",
        "y: !!python/name:os.system\n",
        "\tname: tab-indented\n",
    ],
)
def test_a_refusal_is_the_python_parsers_own(text: str) -> None:
    """Adversarial: code-running tags stay refused, and the message is safe_load's, word for word
    (it quotes the offending line, which libyaml's does not)."""
    import yaml

    with pytest.raises(yaml.YAMLError) as python:
        yaml.safe_load(text)
    with pytest.raises(_DeclarationError) as ours:
        parse_yaml(text, "t.yaml", "thing", _DeclarationError)
    assert str(ours.value) == f"t.yaml: cannot read thing: {python.value}"
