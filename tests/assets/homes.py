"""A tmp_path home for asset tests, built without reading `HITL_*` variables.

`HitlPaths.from_env` honours variables another test in the same worker may have set; an asset
test must never write into someone else's landing folder.
"""

from __future__ import annotations

from pathlib import Path

from hitl_gate.core.home import HitlPaths


def tmp_home(tmp_path: Path) -> HitlPaths:
    home = (tmp_path / "home").resolve()
    return HitlPaths(home=home, landing=home / "landing", review=home / "review_exports")
