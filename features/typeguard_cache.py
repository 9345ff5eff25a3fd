"""Feast's run-time type checks, instrumented once per source file instead of once per process.

Feast decorates its classes with typeguard's `@typechecked`, which instruments each method
when the class is defined: it parses the method's whole module, rewrites the method's syntax
tree with the checks and compiles the module again, once per method (242 methods when `feast`
is imported). That was 3.2 of the 3.8 s of CPU `import feast` cost, paid by every process that
opens a feature store: a test worker, each demo domain's process, the recovery test's
forkserver (2026-12-06, this machine).

`install()` puts `instrument` in front of typeguard's own (`typeguard._decorators.instrument`,
private: there is no public hook). The first time a method is instrumented, typeguard's own
function does the work, and the code object it made is kept in the module's `__pycache__`
folder, as Python keeps a module's compiled bytecode there; later processes load that code and
make the method from it exactly as typeguard does. The file's name is a digest of everything the
code depends on (the module's source, the method's name and first line, the Python and
typeguard versions), so a changed source or an upgrade never meets an old entry. The checks are
the same: the code is the same code object (marshal, the format of `.pyc` files).

Anything unusual is left to typeguard alone, every time: a method whose instrumented code
closes over other variables than the original (typeguard makes new cells for those), its
debugging mode, a Python whose function attributes typeguard sets differently (3.14), a module
without source, and a cache folder that cannot be read or written (nothing is cached; Python's
`-B` / `PYTHONDONTWRITEBYTECODE` keep it from writing, as they do for bytecode).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import marshal
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType, FunctionType
from typing import Any

CACHE_SUFFIX = ".typeguard"  # beside the module's bytecode: `<module>.<tag>.typeguard/<digest>`


def install() -> None:
    """Route typeguard's instrumentation through the cache (once per process; before Feast is
    imported, or Feast's classes are instrumented without it)."""
    from typeguard import _decorators

    if getattr(_decorators.instrument, "_hitl_cached", False) or sys.version_info >= (3, 14):
        return
    original = _decorators.instrument
    uses = set(original.__code__.co_names)
    if _decorators.inspect is not inspect or not {"getsource", "currentframe"} <= uses:
        return  # not the typeguard this was written for: left alone
    _decorators.inspect = _FramesSkippingTheCache  # type: ignore[assignment]
    _decorators.instrument = _cached(original)  # type: ignore[assignment]


class _FramesSkippingTheCache:
    """The `inspect` typeguard's `instrument` sees once `install()` ran: the same functions,
    but the current frame is the cache's `instrument` that called it.

    typeguard finds the values of names a function's annotations take from its enclosing
    function two frames above its own (`instrument` <- `typechecked` <- the enclosing code);
    called by the cache's `instrument`, its own frame is one deeper, so the frame it is given is
    its caller's, and the two frames above that are the right ones again.
    """

    getsource = staticmethod(inspect.getsource)

    @staticmethod
    def currentframe() -> FrameType:
        return sys._getframe(2)  # 0: this, 1: typeguard's instrument, 2: the cache's


def _cached(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def instrument(f: Any) -> Any:
        """typeguard's `instrument(f)`, its code loaded from (or kept in) the cache."""
        from typeguard._config import global_config

        entry = _entry(f, _typeguard_version())
        if entry is None or global_config.debug_instrumentation:
            return original(f)
        code = _load(entry)
        if code is None:
            made = original(f)  # called from here: `_FramesSkippingTheCache`
            same_cells = isinstance(made, FunctionType) and (
                made.__code__.co_freevars == f.__code__.co_freevars
            )
            if same_cells:
                _store(entry, made.__code__)
            return made
        return _function(f, code)

    instrument._hitl_cached = True  # type: ignore[attr-defined]
    return instrument


@functools.cache
def _typeguard_version() -> str:
    return importlib.metadata.version("typeguard")


def _entry(f: Any, version: str) -> Path | None:
    """Where the instrumented code of `f` is kept; None when it cannot be cached."""
    code = getattr(f, "__code__", None)
    module = sys.modules.get(getattr(f, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    if code is None or path is None or hasattr(f, "__wrapped__") or not path.endswith(".py"):
        return None
    try:
        source = inspect.getsource(module)  # type: ignore[arg-type]
        bytecode = importlib.util.cache_from_source(path)
    except (OSError, TypeError, NotImplementedError, ValueError):
        return None
    key = "\0".join(
        [sys.version, version, f.__qualname__, str(code.co_firstlineno), code.co_filename, source]
    )
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return Path(bytecode).with_suffix(CACHE_SUFFIX) / digest


def _load(entry: Path) -> CodeType | None:
    try:
        code = marshal.loads(entry.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return code if isinstance(code, CodeType) else None


def _store(entry: Path, code: CodeType) -> None:
    """Keep `code` under `entry` (written whole, then renamed: readers never see a part)."""
    if sys.dont_write_bytecode:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(dir=entry.parent, prefix=".staged-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(marshal.dumps(code))
            os.replace(staged, entry)
        finally:
            if os.path.exists(staged):
                os.unlink(staged)
    except OSError:
        return


def _function(f: Any, code: CodeType) -> FunctionType:
    """The method typeguard makes from its instrumented `code` (`typeguard._decorators.
    instrument`, 4.x, when the closure is unchanged): the original's globals, cells and
    attributes around the new code."""
    made = FunctionType(code, f.__globals__, f.__name__, closure=f.__closure__)
    made.__module__ = f.__module__
    made.__name__ = f.__name__
    made.__qualname__ = f.__qualname__
    made.__doc__ = f.__doc__
    made.__defaults__ = f.__defaults__
    made.__kwdefaults__ = f.__kwdefaults__
    if sys.version_info >= (3, 12):
        made.__type_params__ = f.__type_params__
    made.__annotations__ = f.__annotations__
    return made
