"""Great Expectations file projects kept open by a process while their project file is unchanged.

Opening GE's file context reads and checks the project's YAML, and each variable it reads
(Data Docs sites, stores, plugins) parses `uncommitted/config_variables.yml` again through its
config substitution; `context.build_data_docs` and `get_docs_sites_urls` make a new site builder
each call, whose new jinja environment compiles GE's page templates again. Together about half
of an expectation check's CPU, paid by every check of every run. A process (a run's steps, a test
process, a backfill's run) keeps instead, per project root, one context and one Data Docs site
builder, and reuses them while `gx/great_expectations.yml` holds the bytes it last saw.

What a file context holds in memory is that file: datasources, their assets and batch
definitions, Data Docs sites, progress bars. Suites, validation definitions and validation
results live in JSON stores read on each use; suites and validation definitions are written
from the declared expectations file when it or their stored files changed (`gx_suites`, which
keeps the definitions it stored in `GxProject.definitions`). So a project changed by anyone
else (another process adding its domain's datasource, a hand edit, a home restored from a copy,
a removed `gx/` folder) shows in that file and is opened afresh, dropping those definitions.
A caller uses a project only while holding the warehouse's validation turn
(`gx_suites._validation_turn`); a project is lent to one user at a time, and one whose use
raised is dropped rather than kept.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hitl_gate.quality.data_docs import install_styles
from hitl_gate.quality.site_pages import (
    copy_static_files,
    render_section,
    share_compiled_templates,
)

if TYPE_CHECKING:
    from great_expectations.data_context.store.store import DataDocsSiteConfigTypedDict

PROJECT_FILE = Path("gx") / "great_expectations.yml"
KEPT_PROJECTS = 4  # project roots a process keeps open (a test process meets many homes)
_SITE_BUILDER = "great_expectations.render.renderer.site_builder"


@dataclass
class GxProject:
    """One open GE file project: its context and the builder of its Data Docs site."""

    context: Any
    site_name: str
    site: DataDocsSiteConfigTypedDict
    site_builder: Any
    project_file: bytes | None  # `gx/great_expectations.yml` as this process last saw it
    # Validation definitions this process stored, by suite name, with what they were made from
    # (`gx_suites.KeptDefinition`): they live and die with this context.
    definitions: dict[str, Any] = field(default_factory=dict)

    def build_pages(self, identifiers: list[Any]) -> list[Path]:
        """Build the site's pages of `identifiers` (no GE index); the files, in that order.

        The pages GE's `site_builder.build(resource_identifiers=..., build_index=False)`
        renders, without its walk of every stored result and its copy of GE's static files at
        each call (`site_pages`).
        """
        for section in self.site_builder.site_section_builders.values():
            render_section(section, identifiers)
        copy_static_files(self.site_builder.target_store)
        urls = [
            self.site_builder.get_resource_url(resource_identifier=i, only_if_exists=True)
            for i in identifiers
        ]
        return [Path(str(url).removeprefix("file://")) for url in urls]

    def has_page(self, identifier: Any) -> bool:
        """Whether the site holds the page of `identifier` (a suite or a validation result)."""
        url = self.site_builder.get_resource_url(
            resource_identifier=identifier, only_if_exists=True
        )
        return url is not None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _open(project_root: Path, site_name: str, site: DataDocsSiteConfigTypedDict) -> GxProject:
    """GE's file context on the project, its Data Docs site set to `site`, no progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.util import instantiate_class_from_config

    context = gx.get_context(mode="file", project_root_dir=str(project_root))
    sites = context.variables.data_docs_sites or {}
    if sites.get(site_name) != site:
        if site_name in sites:
            context.update_data_docs_site(site_name, site)
        else:
            context.add_data_docs_site(site_name, site)
    bars = context.variables.progress_bars
    shown = (
        bars.get("globally", True) if isinstance(bars, dict) else getattr(bars, "globally", True)
    )
    if shown:
        # Progress bars on stderr would flood the Dagster run log and the CLI.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    # The builder GE's `build_data_docs` would make for the site, made once.
    site_builder = instantiate_class_from_config(
        config=copy.deepcopy(dict(site)),
        runtime_environment={
            "data_context": context,
            "root_directory": context.root_directory,
            "site_name": site_name,
        },
        config_defaults={"class_name": "SiteBuilder", "module_name": _SITE_BUILDER},
    )
    share_compiled_templates(site_builder)
    return GxProject(context, site_name, site, site_builder, None)


class OpenProjects:
    """The GE projects this process keeps open, by project root, newest used last."""

    def __init__(self, keep: int = KEPT_PROJECTS) -> None:
        self._keep = keep
        self._idle: OrderedDict[Path, GxProject] = OrderedDict()
        self._guard = threading.Lock()
        self._pid = os.getpid()

    @contextmanager
    def using(
        self, project_root: Path, site_name: str, site: DataDocsSiteConfigTypedDict
    ) -> Iterator[GxProject]:
        """The project at `project_root`, reused if its project file is as last seen, else
        opened; kept for the next use only if this one ends without raising."""
        root = project_root.absolute()
        on_disk = _read(root / PROJECT_FILE)
        with self._guard:
            if self._pid != os.getpid():  # a forked child: its parent's projects are not its own
                self._idle.clear()
                self._pid = os.getpid()
            project = self._idle.pop(root, None)
        if project is None or project.project_file != on_disk or project.site != site:
            project = _open(root, site_name, site)
        install_styles(Path(project.context.root_directory))  # GE inlines them into each page
        yield project
        project.project_file = _read(root / PROJECT_FILE)  # with this use's own writes
        with self._guard:
            self._idle[root] = project
            while len(self._idle) > self._keep:
                self._idle.popitem(last=False)

    def forget(self) -> None:
        """Drop every kept project (the next use of each opens it again)."""
        with self._guard:
            self._idle.clear()


# Per process by nature (a context holds pooled connections and in-memory configuration): the
# steps the in-process executor runs validate through the same contexts; a forked child starts
# with none.
OPEN_PROJECTS = OpenProjects()
