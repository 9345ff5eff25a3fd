"""The standalone bundle checker restates the chain rules exactly (the bundle itself, on the
demo: tests/e2e/test_audit_bundle.py)."""

from __future__ import annotations

import random
from pathlib import Path

from hitl_gate.audit import bundle_check, chain, seal


def test_the_standalone_checker_restates_the_chain_rules_exactly() -> None:
    """`bundle_check` may not import hitl-gate; this keeps its copy of the rules equal."""
    rng = random.Random(7)
    for count in (0, 1, 2, 3, 5, 8, 13, 16, 17, 33, 100, 300):
        leaves = [rng.randbytes(32) for _ in range(count)]
        for fanout in (2, 16):
            assert bundle_check.merkle_root(leaves, fanout) == chain.merkle_root_of_digests(
                leaves, fanout
            )
    assert bundle_check.CHECKPOINT_FIELDS == seal.CHECKPOINT_FIELDS
    cp = {name: f"v{i}" for i, name in enumerate(seal.CHECKPOINT_FIELDS)} | {"first_seq": 3}
    for fanout in (None, 2, 16):
        with_fanout = cp if fanout is None else cp | {"merkle_fanout": fanout}
        assert bundle_check.checkpoint_message(with_fanout) == seal.checkpoint_message(with_fanout)
    source = Path(bundle_check.__file__).read_text(encoding="utf-8")
    assert "from hitl_gate" not in source and "import hitl_gate" not in source
