"""Homes for end-to-end tests: each built once per test run, restored before every test.

Building a home takes minutes (`hitl demo`; a scaffolded domain trained and run), so one process
of the run builds it. A built home stores absolute paths of itself: landing files in sealed
audit rows and in the warehouse's Parquet, review batch folders, the MLflow artifact store,
Feast's registry, the Great Expectations project, Dagster's run history. The audit rows cannot
be rewritten without breaking their seals, so a copy elsewhere would not be self-consistent (it
would read the original's files through those paths). Instead every test gets the home at the
very path it was built at (`work`), restored from a snapshot taken right after the build
(`pristine`), which no test ever opens.

A lock owns `work`: a test holds it from the restore to its end, so no two tests, nor two xdist
workers, ever share a home. The tests of one template are kept on one xdist worker
(`xdist_group`, tests/e2e/conftest.py), so they never wait for each other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from filelock import FileLock

CLOCK_TICK = 0.02  # seconds: more than the kernel's timestamp granularity (a tick, <= 10 ms)
HOME_ENV_NAMES = ("HITL_HOME", "HITL_LANDING_DIR", "HITL_REVIEW_DIR", "DAGSTER_HOME")


class HomeTemplate:
    """A folder built once by `build(work)`, handed to each test as a pristine copy of itself."""

    def __init__(self, base: Path, name: str, build: Callable[[Path], None]) -> None:
        self.root = base / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.build = build
        # One lock object per template: re-entrant in this process, exclusive across processes.
        self.lock = FileLock(base / f"{name}.lock")
        self.failure = base / f"{name}.failed"
        self.restorer = Restorer(self.pristine, self.work)

    @property
    def work(self) -> Path:
        """Where the home is built, and where every test finds it."""
        return self.root / "work"

    @property
    def pristine(self) -> Path:
        """The snapshot taken right after the build: only ever copied from."""
        return self.root / "pristine"

    @property
    def digests(self) -> Path:
        """The snapshot's file digests, recorded when it was taken."""
        return self.root / "pristine.sha256.json"

    @contextmanager
    def checkout(self) -> Iterator[Path]:
        """`work`, freshly restored, owned by the caller until the block ends.

        The environment is given back as it was: the CLI exports the home it is given.
        """
        environment = dict(os.environ)
        with self.lock:
            if self._ensure_built():
                self.restorer.restore()
            try:
                yield self.work
            finally:
                os.environ.clear()
                os.environ.update(environment)

    def recorded_digests(self) -> dict[str, str]:
        return json.loads(self.digests.read_text(encoding="utf-8"))

    def _ensure_built(self) -> bool:
        """Build and snapshot the home the first time (under the lock, so once per run); whether
        it was built before (so `work` may hold an earlier test's changes)."""
        if self.failure.exists():
            pytest.fail(f"{self.root.name} could not be built:\n{self.failure.read_text()}")
        if self.pristine.is_dir():
            return True
        environment = dict(os.environ)
        try:
            with pytest.MonkeyPatch.context() as patch:
                for name in HOME_ENV_NAMES:
                    patch.delenv(name, raising=False)
                shutil.rmtree(self.work, ignore_errors=True)  # from a run killed mid-build
                self.work.mkdir()
                self.build(self.work)
        except BaseException:
            self.failure.write_text(traceback.format_exc(), encoding="utf-8")
            raise
        finally:
            os.environ.clear()
            os.environ.update(environment)
        # Copied under a temporary name first: a run killed mid-copy leaves no half snapshot.
        partial = self.root / "pristine.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.work, partial, symlinks=True)
        self.digests.write_text(json.dumps(tree_digest(partial), indent=0), encoding="utf-8")
        partial.rename(self.pristine)
        self.restorer.settle()  # `work` is the snapshot: kept as is, with its inodes
        return False


class Restorer:
    """Keeps `work` equal to `pristine`, rewriting only what changed since the last restore.

    An entry is unchanged when its inode and its change time are the ones seen right after the
    last restore: the kernel sets the change time (ctime) on every write, rename and chmod, and
    no tool can set it back. A changed file is rewritten in place, keeping its inode: libraries
    cache connections by path (MLflow's SQLAlchemy engine), and a SQLite connection to a file
    replaced under it can no longer write ("attempt to write a readonly database"). Entries
    the snapshot lacks are removed; entries missing are copied.
    """

    def __init__(self, pristine: Path, work: Path) -> None:
        self.pristine = pristine
        self.work = work
        self.seen: dict[str, Stamp] = {}

    def restore(self) -> None:
        if self.work.is_dir():
            self._sync()
        else:
            shutil.copytree(self.pristine, self.work, symlinks=True)
        self.settle()

    def settle(self) -> None:
        """Record `work` as it is now (equal to `pristine`) as the state to come back to."""
        # File times come from a coarse clock: wait for it to move on, so that a write right
        # after the hand-over cannot carry the change time recorded here.
        time.sleep(CLOCK_TICK)
        self.seen = _stamps(self.work)

    def _sync(self) -> None:
        now = _stamps(self.work)
        originals = self._pristine_entries()
        kept = set(now)
        touched = set()  # folders whose entries or own status change: their status is copied
        for relative in sorted(now, reverse=True):  # a folder's entries before the folder
            if self.seen.get(relative) == now[relative]:
                continue
            path, original = self.work / relative, originals.get(relative)
            touched.add(path.parent)
            if original is not None and original.kind == now[relative].kind != "link":
                if original.kind == "dir":
                    touched.add(path)  # its entries are checked one by one
                else:
                    shutil.copyfile(self.pristine / relative, path)  # same inode
                    shutil.copystat(self.pristine / relative, path)
                continue
            if now[relative].kind == "dir":
                shutil.rmtree(path)
            else:
                path.unlink()
            kept.discard(relative)
        for relative, original in originals.items():  # parents before their entries
            if relative in kept:
                continue
            path = self.work / relative
            touched.add(path.parent)
            if original.kind == "dir":
                path.mkdir()
                touched.add(path)
            else:
                shutil.copy2(self.pristine / relative, path, follow_symlinks=False)
        folders = {r for r, stamp in originals.items() if stamp.kind == "dir"} | {"."}
        for path in sorted(touched, key=lambda p: len(p.parts), reverse=True):
            relative = path.relative_to(self.work).as_posix()
            if relative in folders:  # not a folder of the test's own, removed above
                shutil.copystat(self.pristine / relative, path)

    @functools.cache  # noqa: B019 (one restorer per template and process)
    def _pristine_entries(self) -> dict[str, Stamp]:
        return dict(sorted(_stamps(self.pristine).items(), key=lambda item: item[0].count("/")))


class Stamp(NamedTuple):
    """What tells an entry apart from its earlier self: inode and change time; and its kind."""

    inode: int
    ctime_ns: int
    kind: str  # "dir", "link" or "file"


def _stamps(folder: Path) -> dict[str, Stamp]:
    """Every entry under `folder` by relative path (links are not followed)."""
    stamps = {}
    pending = [("", str(folder))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = prefix + entry.name
                status = entry.stat(follow_symlinks=False)
                if entry.is_symlink():
                    kind = "link"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                    pending.append((f"{relative}/", entry.path))
                else:
                    kind = "file"
                stamps[relative] = Stamp(status.st_ino, status.st_ctime_ns, kind)
    return stamps


def changed_entries(template: HomeTemplate) -> list[str]:
    """The files and links of the template's `work` (relative paths) written, added or removed
    since its last restore (a folder changes with its entries: they are listed themselves)."""
    now, seen = _stamps(template.work), template.restorer.seen
    return sorted(
        relative
        for relative in now.keys() | seen.keys()
        if now.get(relative) != seen.get(relative)
        and "dir" not in {stamp.kind for stamp in (now.get(relative), seen.get(relative)) if stamp}
    )


def restore(pristine: Path, work: Path) -> None:
    """Make `work` an exact copy of `pristine` again (contents, modes, times), every file
    rewritten (no record of an earlier restore)."""
    Restorer(pristine, work).restore()


def tree_digest(folder: Path) -> dict[str, str]:
    """Every entry under `folder` by relative path: a file's SHA-256, a link's target, 'dir'."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            digests[relative] = f"-> {os.readlink(path)}"
        elif path.is_file():
            digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digests[relative] = "dir"
    return digests


def shared_base(factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of the whole run: with xdist, the parent of each worker's own."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def session_template(
    factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Iterator[HomeTemplate]:
    """The body of a session fixture `<something>_template`: the template, then, at the end of
    the session, proof that no test changed its snapshot."""
    template = HomeTemplate(shared_base(factory), name, build)
    yield template
    if template.pristine.is_dir():
        assert tree_digest(template.pristine) == template.recorded_digests(), (
            f"a test changed the pristine snapshot of {name}"
        )
