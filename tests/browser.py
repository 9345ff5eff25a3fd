"""The system Chromium for browser tests (Playwright, headless), launched the cheap way.

Chromium 156's headless mode is the whole browser: every window Playwright opens (one per page)
preloads the omnibox popup's WebUI pages (`chrome://omnibox-popup.top-chrome/`), each in a
renderer of its own: about 0.6 CPU s per page, a fifth of a report page's cost, for a popup no
test ever opens (2026-12-07, 2 cores). Those features are turned off here.

Chromium keeps only the last `--disable-features` switch, and Playwright passes its own list
(features that break automation), so ours must repeat Playwright's. Its list is read from the
installed driver, so an upgrade cannot silently drop one; if it cannot be read, the popups stay
on (slower, never different).
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = shutil.which("chromium")
UNUSED_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup")
_PLAYWRIGHT_LIST = re.compile(r"\bdisabledFeatures = \[([^\]]*)\]")


@functools.cache
def playwright_disabled_features() -> tuple[str, ...] | None:
    """The features the installed Playwright disables in Chromium; None if not found."""
    from playwright._impl._driver import compute_driver_executable

    bundle = Path(compute_driver_executable()[1]).parent / "lib" / "coreBundle.js"
    try:
        found = _PLAYWRIGHT_LIST.search(bundle.read_text(encoding="utf-8"))
    except OSError:
        return None
    if found is None:
        return None
    code = re.sub(r"//[^\n]*", "", found.group(1))  # the list's comments may quote names
    names = tuple(re.findall(r'"([A-Za-z0-9]+)"', code))
    return names or None


def chromium_args() -> list[str]:
    """Switches added to Playwright's: no GPU, and no omnibox popups (see the module's doc)."""
    args = ["--disable-gpu"]
    theirs = playwright_disabled_features()
    if theirs is not None:
        args.append("--disable-features=" + ",".join((*theirs, *UNUSED_FEATURES)))
    return args


def launch_chromium(playwright: Playwright) -> Browser:
    """The system Chromium, headless (the caller checked that it is installed)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())
