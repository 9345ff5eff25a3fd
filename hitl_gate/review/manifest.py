"""Reading and checking a batch's signed `manifest.json`, shared by export and verdict intake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hitl_gate.review.canonical import SAFE_ID_RE
from hitl_gate.review.signing import verify

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


class ManifestError(ValueError):
    """A batch manifest that is missing, unreadable or not signed by our key."""


def batch_folder(batches_dir: Path, batch_id: str, assignee_id: str | None = None) -> Path:
    """The folder of `batch_id`: `<batches>/<assignee>/<batch_id>` for an assigned batch
    (pass the current assignee from `review_assignments`), else the one person folder holding
    it, else the flat `<batches>/<batch_id>` of an unassigned export. Refuses ids (and
    assignee ids) that could point outside `batches_dir`. Staging (`.tmp-*`) and set-aside
    (`.replaced`) folders are never returned: a half-written batch is not a batch."""
    if not SAFE_ID_RE.match(batch_id):
        raise ManifestError(f"unknown batch '{batch_id}'")
    if assignee_id is not None:
        if not SAFE_ID_RE.match(assignee_id) or assignee_id.startswith("."):
            raise ManifestError(f"batch '{batch_id}': unusable assignee id '{assignee_id}'")
        return batches_dir / assignee_id / batch_id
    flat = batches_dir / batch_id
    if flat.is_dir() or not batches_dir.is_dir():
        return flat
    held = [
        person / batch_id
        for person in sorted(batches_dir.iterdir())
        if not person.name.startswith(".") and (person / batch_id).is_dir()
    ]
    return held[0] if len(held) == 1 else flat


def load_manifest(folder: Path, key: bytes) -> dict[str, Any]:
    """The manifest in `folder`, after its signature has been verified with `key`."""
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"unknown batch '{folder.name}': no {MANIFEST_NAME}") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: manifest is not a JSON object")
    body = {name: value for name, value in manifest.items() if name != "signature"}
    if not verify(body, manifest.get("signature", ""), key):
        raise ManifestError("manifest signature invalid")
    if manifest.get("batch_id") != folder.name:
        raise ManifestError(f"{path}: manifest names batch '{manifest.get('batch_id')}'")
    return manifest
