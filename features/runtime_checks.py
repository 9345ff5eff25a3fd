"""Feast's classes as written, without typeguard's import-time instrumentation.

Feast wraps its classes in typeguard's `@typechecked`, which rewrites each method to check its
arguments at every call; to do so it parses and compiles the method's whole module again, once
per method, when Feast is imported: about 2.6 of the 4 s of CPU `import feast` costs on this
machine, in every process that imports it (each `hitl` run, each step process, each test
worker). `features/__init__.py` makes the decorator a no-op before Feast is imported, as Python
itself does under `-O`: this package's calls into Feast are checked by mypy against Feast's own
annotations instead (Feast ships `py.typed`; mypy checks `features/`). Only Feast uses the
decorator among the installed packages (pandera calls typeguard's `check_type`, unchanged).
"""

from __future__ import annotations

from typing import Any


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """`typeguard.typechecked` under `python -O`: the function or class unchanged, whether
    applied bare (`@typechecked`) or with options (`@typechecked(...)`)."""
    return _unchecked if target is None else target


def skip_feast_instrumentation() -> None:
    """Make `typeguard.typechecked` a no-op for the modules imported from now on (Feast's,
    when this runs before `import feast`; classes decorated earlier keep their checks)."""
    import typeguard

    setattr(typeguard, "typechecked", _unchecked)  # noqa: B010 - mypy: a module's function
