"""Declaration files (domains, review settings, expectations, policies): YAML read one way.

Every loader reports a file that cannot be read or parsed, or that does not match its model,
with the file named first, in the error type of its own layer (so callers keep catching
`DomainConfigError`, `PolicyError`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

# libyaml's parser (the C one PyYAML is built with) reads a declaration about 8x faster than the
# pure-Python one, and the values are the same: PyYAML's own safe resolver and constructor build
# them from its events. Declarations are read by every run and CLI command, so it pays.
FAST_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, source: str | Path, what: str, error: type[ValueError]) -> Any:
    """`text` parsed as YAML; a syntax error raises `error` naming `source` and `what` it holds.

    Text the fast parser refuses is read again by `yaml.safe_load`, so what is accepted, and
    the message of a refusal (it quotes the offending line), are exactly the Python parser's.
    """
    try:
        return yaml.load(text, Loader=FAST_SAFE_LOADER)  # noqa: S506 (a safe loader)
    except yaml.YAMLError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{source}: cannot read {what}: {exc}") from exc


def read_yaml(path: Path, what: str, error: type[ValueError]) -> Any:
    """The parsed YAML file `path`; unreadable or unparsable files raise `error` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from exc
    return parse_yaml(text, path, what, error)


def load_model(
    path: Path, model: type[Model], what: str, error: type[ValueError], **extra: Any
) -> Model:
    """The YAML file `path` validated as `model` (plus `extra` fields); errors name the file."""
    raw = read_yaml(path, what, error)
    try:
        return model.model_validate({**raw, **extra} if extra else raw)
    except (TypeError, ValidationError) as exc:
        raise error(f"{path}: invalid {what}:\n{exc}") from exc
