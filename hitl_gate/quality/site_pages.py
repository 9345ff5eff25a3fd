"""The Data Docs pages of one validation, built by GE's own section builders, for their cost.

A GE `SiteBuilder.build(resource_identifiers=...)` renders the pages asked for, but first each
of its section builders lists every key of its source store to find them (every validation
result ever stored: a walk of `uncommitted/validations/` that a home adds to at each check), and
then it copies GE's static files (4 MB of CSS, scripts, fonts, images) into the site again.
`render_section` renders, with the section builder's own renderer, view and target store, the
identifiers its store holds, as its build would; `copy_static_files` copies GE's static files
only when the site lacks one of them or holds one of another size (another GE version).

Each of GE's page views makes its own jinja environment, so every project a process opens (a
test process meets one per home) compiled GE's page templates again for its first pages, most
of a page's CPU. `share_compiled_templates` gives those environments one bytecode cache per
process (jinja's own mechanism: a template whose source changed has another checksum and is
compiled again).

One difference, by design: a section with `validation_results_limit` (ours: `INDEX_LIMIT`)
builds only the newest results by run time; a check renders the result it has just stored,
the newest there is, so that limit never excludes it.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

logger = logging.getLogger(__name__)


def render_section(section: Any, identifiers: list[Any]) -> list[Any]:
    """Render with GE's section builder `section` the `identifiers` its store holds and its
    run-name filter admits; returns those. A page that fails to render is logged and skipped,
    as GE's own build does (the check's result does not depend on its page)."""
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        SiteSectionIdentifier,
    )
    from great_expectations.render.util import resource_key_passes_run_name_filter

    store = section.source_store
    rendered = []
    for key in identifiers:
        if not isinstance(key, store.key_class) or not store.has_key(key):
            continue
        if section.run_name_filter and not resource_key_passes_run_name_filter(
            key, section.run_name_filter
        ):
            continue
        try:
            resource = store.get(key)
            if isinstance(key, ExpectationSuiteIdentifier):
                resource = ExpectationSuite(**resource)
            page = section.view_class.render(
                section.renderer_class.render(resource),
                data_context_id=section.data_context_id,
                show_how_to_buttons=section.show_how_to_buttons,
            )
            section.target_store.set(
                SiteSectionIdentifier(site_section_name=section.name, resource_identifier=key),
                page,
            )
        except Exception:
            logger.exception("GE could not render the %s page of %s", section.name, key)
            continue
        rendered.append(key)
    return rendered


@cache
def _ge_static_files() -> tuple[tuple[str, int], ...]:
    """GE's static files (path under `static/`, size), as its HTML store copies them."""
    import great_expectations

    root = Path(great_expectations.__file__).parent / "render" / "view" / "static"
    return tuple(
        (path.relative_to(root.parent).as_posix(), path.stat().st_size)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != ".DS_Store"
    )


def copy_static_files(target_store: Any) -> bool:
    """Copy GE's static files into the site of `target_store` (GE's `HtmlSiteStore`) if one is
    missing there or differs in size; True if they were copied."""
    site = Path(target_store.store_backends["static_assets"].full_base_directory)
    present = all(
        (site / name).is_file() and (site / name).stat().st_size == size
        for name, size in _ge_static_files()
    )
    if not present:
        target_store.copy_static_assets()
    return not present


class _ProcessBytecode(jinja2.BytecodeCache):
    """Compiled templates kept in memory, by jinja's key (template name and file)."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # jinja drops it if the source's checksum differs

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = _ProcessBytecode()


def share_compiled_templates(site_builder: Any) -> None:
    """Let the page views of `site_builder` (GE's `SiteBuilder`) use the process's compiled
    templates. GE makes every page view's environment the same way (loaders of its package
    templates, then the project's custom styles and views, whose files are keyed apart)."""
    for section in site_builder.site_section_builders.values():
        section.view_class.env.bytecode_cache = COMPILED_TEMPLATES
