"""The review inbox: where returned files wait, stored so that none overwrites another.

Reviewers return files into the inbox: into its root, into a folder of their own
(`inbox/<person_id>/`), or through `hitl review ingest`, which stores each file by its content
hash, `inbox/sha256-<hex>/<original name>`, with its signature beside it. Two reviewers'
`cases.xlsx` are then two different folders, both kept and both taken in; the original name is
kept as the file's name (and recorded in `verdict_files.file_name`). Intake archives every file
by its hash and removes the emptied hash folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path

from hitl_gate.identity.signatures import signature_path

VERDICT_SUFFIXES = (".xlsx", ".csv")
HASH_FOLDER_PREFIX = "sha256-"


def _is_verdict_file(path: Path) -> bool:
    return (
        path.is_file()
        and path.suffix.lower() in VERDICT_SUFFIXES
        and not path.name.startswith((".", "~$"))  # hidden files and Office lock files
    )


def pending_files(inbox: Path) -> list[Path]:
    """Verdict files waiting in the inbox (its root and its folders), in path order.

    The order decides which of two files answering the same case wins (the first valid final
    verdict stands), so it must not depend on arrival timing or the file system's listing.
    """
    if not inbox.exists():
        return []
    found = [p for p in inbox.iterdir() if _is_verdict_file(p)]
    for folder in inbox.iterdir():
        if folder.is_dir() and not folder.is_symlink():
            found += [p for p in folder.iterdir() if _is_verdict_file(p)]
    return sorted(found, key=lambda p: p.relative_to(inbox).as_posix())


def escaped(text: str) -> str:
    """`text` with control and other non-printable characters shown as escapes (a file name
    can never fake a log line)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown_name(inbox: Path, path: Path) -> str:
    """How messages name a returned file: its original name, with the reviewer's folder."""
    parent = path.parent
    if parent == inbox or parent.name.startswith(HASH_FOLDER_PREFIX):
        return escaped(path.name)
    return escaped(f"{parent.name}/{path.name}")


def receive_file(source: Path, inbox: Path) -> Path:
    """Store `source` (and `source.sig` when present) in the inbox by content hash; the path
    stored. Storing the same bytes again is harmless (same folder, same content)."""
    data = source.read_bytes()
    folder = inbox / f"{HASH_FOLDER_PREFIX}{hashlib.sha256(data).hexdigest()}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    temporary = folder / f".{source.name}.part"
    temporary.write_bytes(data)
    signature = signature_path(source)
    if signature.is_file():
        shutil.copyfile(signature, folder / f".{signature.name}.part")
        (folder / f".{signature.name}.part").replace(signature_path(target))
    temporary.replace(target)  # the file last: once visible, its signature is already there
    return target


def remove_empty_hash_folder(folder: Path) -> None:
    """Drop a content-hash folder once its file (and signature) left it."""
    if folder.name.startswith(HASH_FOLDER_PREFIX):
        # not empty (another file of the same content) or already gone: keep it
        with contextlib.suppress(OSError):
            folder.rmdir()
