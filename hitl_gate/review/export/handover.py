"""A reassigned batch handed to its new assignee: moved into their folder, re-signed, re-sealed.

The reassignment itself is the signed row in `review_assignments` (`assignments.reassign`);
this moves the files to match it. The manifest is rewritten naming the new assignee and signed
again with the pipeline's key; encrypted files are decrypted with the pipeline's age key and
encrypted again to the new assignee, so the previous assignee's key no longer opens them.
The move is the last step: until it is done intake finds no batch under the new assignee and
refuses verdicts for it; running the hand-over again completes it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from pyrage import x25519  # type: ignore[import-untyped]

from hitl_gate.identity.registry import Registry
from hitl_gate.review.assignments import age_keys
from hitl_gate.review.export.sealing import (
    AGE_SUFFIX,
    SealingError,
    private_folder,
    recipients,
    reencrypt,
    restrict_files,
)
from hitl_gate.review.manifest import MANIFEST_NAME, ManifestError, batch_folder, load_manifest
from hitl_gate.review.signing import sign


def hand_over(
    batches_dir: Path,
    batch_id: str,
    *,
    to: str,
    key: bytes,
    registry: Registry,
    pipeline: x25519.Identity | None,
    at: datetime,
) -> Path:
    """Move `batch_id` into `to`'s folder, naming them in its re-signed manifest; its path."""
    target = batch_folder(batches_dir, batch_id, to)
    source = target if target.is_dir() else batch_folder(batches_dir, batch_id)
    if not source.is_dir():
        raise ManifestError(f"batch '{batch_id}': no folder under {batches_dir}")
    manifest = load_manifest(source, key)
    encrypted = manifest.get("encrypted", {}).get("files", [])
    if encrypted:
        person = registry.people.get(to)
        if pipeline is None or person is None:
            raise SealingError(f"batch '{batch_id}' is encrypted: the pipeline's age key is needed")
        sealed_to = recipients(age_keys(person, at), str(pipeline.to_public()))
        for name in encrypted:
            reencrypt(source / f"{name}{AGE_SUFFIX}", pipeline, sealed_to)
    body = {name: value for name, value in manifest.items() if name != "signature"}
    body["assignee_id"] = to
    body["signature"] = sign(body, key)
    text = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    temporary = source / f".{MANIFEST_NAME}.tmp"
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(source / MANIFEST_NAME)
    restrict_files(source)
    if source != target:
        private_folder(target.parent)
        os.rename(source, target)
    return target
