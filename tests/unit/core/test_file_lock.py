"""The lock-file helper (`core.file_lock`): a per-run lock file is deleted when its holder is
done, never while anyone holds it, and deleting it never lets two holders in at once.

`flock` conflicts between two opens of a file even in one process, so a second open here
stands for another process."""

from __future__ import annotations

import threading
from pathlib import Path

from hitl_gate.core.file_lock import exclusive_lock, is_held, remove_if_free


def test_a_removed_lock_file_goes_at_the_end_of_its_block_and_not_before(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    with exclusive_lock(path, remove=True):
        assert is_held(path)
        assert not remove_if_free(path)  # held: left alone
        assert path.exists()
    assert not path.exists() and not is_held(path)
    assert not path.exists()  # asking does not create it again


def test_a_free_lock_file_is_removed_and_a_held_one_kept(tmp_path: Path) -> None:
    free, held = tmp_path / "free.lock", tmp_path / "held.lock"
    with exclusive_lock(free):
        pass
    assert free.exists() and remove_if_free(free) and not free.exists()
    assert remove_if_free(tmp_path / "none.lock")
    with exclusive_lock(held):
        assert not remove_if_free(held) and held.exists()


def test_a_waiter_whose_file_was_removed_locks_the_file_now_at_the_path(tmp_path: Path) -> None:
    """The holder deletes the file as it lets go; the process that waited on that (now
    nameless) file must not count as holding the path, or a third one would lock a new file
    there too: it locks the file at the path instead, so anyone asking sees it held."""
    path = tmp_path / "run.lock"
    acquired, done = threading.Event(), threading.Event()

    def waiter() -> None:
        with exclusive_lock(path):
            acquired.set()
            done.wait(10)

    with exclusive_lock(path, remove=True):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not acquired.wait(0.3)  # waits while the holder holds it
    assert acquired.wait(10)
    assert path.exists() and is_held(path)  # held under the path's own file
    assert not remove_if_free(path)
    done.set()
    thread.join(10)
    assert not is_held(path)
