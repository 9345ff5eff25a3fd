"""typeguard's instrumentation through the cache (features/typeguard_cache.py): the same code,
the same checks, from the second import on without typeguard's parse and compile."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from typeguard import TypeCheckError

from features import typeguard_cache

SAMPLE = '''
from __future__ import annotations

from typeguard import typechecked

LIMIT = 3


@typechecked
class Claim:
    """A sample of what Feast decorates: methods, a property, class and static methods."""

    def __init__(self, ref: str, amount: float = 1.0, *, tags: list[str] | None = None) -> None:
        self.ref, self.amount, self.tags = ref, amount, tags or []

    @property
    def label(self) -> str:
        return f"{self.ref}:{self.amount}"

    @classmethod
    def parse(cls, text: str) -> Claim:
        return cls(text)

    @staticmethod
    def limit(n: int) -> int:
        return min(n, LIMIT)

    def __repr__(self) -> str:
        return super().__repr__()  # a zero-argument super(): the `__class__` cell


@typechecked
def total(amounts: list[float]) -> float:
    return float(sum(amounts))
'''


def _import_fresh(folder: Path, name: str, source: str) -> ModuleType:
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def _functions(module: ModuleType) -> dict[str, object]:
    claim = module.Claim.__dict__
    return {
        "__init__": claim["__init__"],
        "label": claim["label"].fget,
        "parse": claim["parse"].__func__,
        "limit": claim["limit"].__func__,
        "__repr__": claim["__repr__"],
        "total": module.total,
    }


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"__pycache__/*{typeguard_cache.CACHE_SUFFIX}/*"))


@pytest.fixture
def sample_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    typeguard_cache.install()  # features/__init__.py did it already; a second call changes nothing
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    return tmp_path


def test_a_cached_method_is_the_code_typeguard_made_and_checks_alike(sample_dir: Path) -> None:
    name = f"tg_sample_{uuid.uuid4().hex}"
    made = _functions(_import_fresh(sample_dir, name, SAMPLE))  # typeguard's own work, kept
    assert len(_entries(sample_dir)) == len(made)
    loaded_module = _import_fresh(sample_dir, name, SAMPLE)  # from the cache
    loaded = _functions(loaded_module)
    for key, function in made.items():
        again = loaded[key]
        assert again is not function
        assert again.__code__ == function.__code__, key  # type: ignore[attr-defined]
        for attribute in ("__name__", "__qualname__", "__doc__", "__defaults__",
                          "__kwdefaults__", "__annotations__", "__module__"):  # fmt: skip
            assert getattr(again, attribute) == getattr(function, attribute), (key, attribute)
    assert len(_entries(sample_dir)) == len(made)  # nothing new written

    claim = loaded_module.Claim.parse("CLM-1")
    assert claim.label == "CLM-1:1.0" and loaded_module.Claim.limit(9) == 3
    assert repr(claim).startswith("<")  # the `__class__` cell works in the loaded method
    assert loaded_module.total([1.0, 2.0]) == 3.0
    with pytest.raises(TypeCheckError):
        loaded_module.Claim(42)
    with pytest.raises(TypeCheckError):
        loaded_module.Claim("CLM-2", tags=[1])
    with pytest.raises(TypeCheckError):
        loaded_module.total("12")


def test_a_changed_source_is_instrumented_anew(sample_dir: Path) -> None:
    name = f"tg_sample_{uuid.uuid4().hex}"
    _import_fresh(sample_dir, name, SAMPLE)
    first = set(_entries(sample_dir))
    retyped = SAMPLE.replace(
        "amounts: list[float]) -> float:\n    return float(sum(amounts))",
        "amounts: int) -> float:\n    return float(amounts)",
    )
    assert retyped != SAMPLE
    changed = _import_fresh(sample_dir, name, retyped)
    assert set(_entries(sample_dir)) > first  # new entries beside the old ones
    assert changed.total(2) == 2.0
    with pytest.raises(TypeCheckError):
        changed.total([1.0])


def test_a_closure_over_new_names_is_left_to_typeguard(sample_dir: Path) -> None:
    """A function whose annotations name a local of its enclosing function: typeguard gives its
    code a new cell for it, found two frames up (the cache's own frame must not get in the
    way), so it is instrumented every time, never kept."""
    source = """
from typeguard import typechecked


def make():
    class Inner:
        pass

    @typechecked
    def same(x: Inner) -> Inner:
        return x

    return same, Inner
"""
    name = f"tg_closure_{uuid.uuid4().hex}"
    for _ in range(2):
        same, inner = _import_fresh(sample_dir, name, source).make()
        assert same.__code__.co_freevars == ("Inner",)  # instrumented, with the new cell
        assert isinstance(same(inner()), inner)
        with pytest.raises(TypeCheckError):
            same("2")
    assert _entries(sample_dir) == []


def test_no_entry_is_written_when_bytecode_is_not(
    sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    module = _import_fresh(sample_dir, f"tg_sample_{uuid.uuid4().hex}", SAMPLE)
    assert _entries(sample_dir) == []
    with pytest.raises(TypeCheckError):
        module.total("12")
