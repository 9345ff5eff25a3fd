"""Each shipped domain's review workbook, rendered by LibreOffice as a reviewer opens it.

What a reviewer sees is what LibreOffice draws, not what openpyxl wrote: the test converts the
exported `cases.xlsx` with `soffice --headless --convert-to html` (every sheet) and to PDF (the
print layout), then looks for every required column and every code's text in the rendering.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import DomainConfig, domain_files, load_domain
from hitl_gate.review.case_file import evidence_columns, policy_notes
from hitl_gate.review.export.batches import (
    SIGNAL_COLUMNS,
    VERDICT_COLUMNS,
    BatchExport,
    ReviewBatch,
    export_review_batches,
)
from hitl_gate.review.export.days import manifest_context
from hitl_gate.review.settings import review_settings
from policies.model import load_policy
from tests.unit.review.case_file_frames import routed_review_cases

SOFFICE = shutil.which("soffice")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed"),
    pytest.mark.xdist_group("case-file-render"),  # one worker renders once (`--dist loadgroup`)
]
SHIPPED = ["consumer_credit", "lending_club"]
CREATED = datetime(2018, 3, 2, 9, 30, tzinfo=UTC)


def test_the_shipped_domains_are_the_ones_rendered() -> None:
    """A newly shipped domain must join the render test, not slip past it."""
    assert sorted(domain_files()) == SHIPPED


def _render(files: list[Path], out: Path, fmt: str) -> list[Path]:
    """`files` converted by LibreOffice into `out` in one run (one start-up), with a profile of
    its own so parallel runs never share one."""
    profile = out / "profile"
    subprocess.run(
        [str(SOFFICE), f"-env:UserInstallation={profile.as_uri()}", "--headless",
         "--convert-to", fmt, "--outdir", str(out), *map(str, files)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return [out / f"{path.stem}.{fmt}" for path in files]


@dataclass(frozen=True)
class Rendered:
    """One domain's exported batches and the text LibreOffice renders of each workbook."""

    domain: DomainConfig
    cases: pl.DataFrame
    batches: list[ReviewBatch]
    texts: dict[str, str]  # batch id -> rendered text
    pdfs: dict[str, bytes]


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """Every shipped domain's exported batches, by domain, rendered by one LibreOffice run per
    format over all their workbooks (a run's start-up is most of its cost)."""
    folder = tmp_path_factory.mktemp("renders")
    exported = {}
    for name in SHIPPED:
        domain = load_domain(name)
        cases = routed_review_cases(domain)
        exported[name] = (domain, cases, _export(domain, cases, folder / name / "batches"))
    copies = {}  # every workbook is cases.xlsx: one name each (batch ids name their domain)
    for _, _, batches in exported.values():
        for batch in batches:
            copies[batch.batch_id] = folder / f"{batch.batch_id}.xlsx"
            shutil.copyfile(batch.folder / "cases.xlsx", copies[batch.batch_id])
    pages = dict(zip(copies, _render(list(copies.values()), folder / "html", "html"), strict=True))
    pdfs = dict(zip(copies, _render(list(copies.values()), folder / "pdf", "pdf"), strict=True))
    return {
        name: Rendered(
            domain,
            cases,
            batches,
            {b.batch_id: _text(pages[b.batch_id]) for b in batches},
            {b.batch_id: pdfs[b.batch_id].read_bytes() for b in batches},
        )
        for name, (domain, cases, batches) in exported.items()
    }


@pytest.fixture(params=SHIPPED)
def rendered(request: pytest.FixtureRequest, renders: dict[str, Rendered]) -> Rendered:
    """One domain's batches and their renderings."""
    return renders[request.param]


def _text(rendered: Path) -> str:
    """The rendered HTML as plain text: one line per table row, cells tab-separated."""
    body = re.sub(r"\s+", " ", rendered.read_text(encoding="utf-8", errors="replace"))
    body = re.sub(r"<br\s*/?>", " ", body, flags=re.I)
    body = re.sub(r"</t[dh]>", "\t", body, flags=re.I)
    body = re.sub(r"</tr>", "\n", body, flags=re.I)
    text = re.sub(r"[ \xa0]+", " ", html.unescape(re.sub(r"<[^>]+>", "", body)))
    return "\n".join("\t".join(c.strip() for c in line.split("\t")) for line in text.split("\n"))


def _export(domain: DomainConfig, cases: pl.DataFrame, folder: Path) -> list[ReviewBatch]:
    notes = policy_notes(load_policy(Path(domain.policy)))
    return export_review_batches(
        cases,
        BatchExport(
            domain=domain,
            batches_dir=folder,
            key=b"k" * 32,
            partition_date=date(2018, 3, 1),
            created_at=CREATED,
            context=manifest_context(cases),
            settings=review_settings(domain),
            notes=notes,
        ),
    )


def test_the_rendered_workbook_shows_every_column_and_code(rendered: Rendered) -> None:
    domain = rendered.domain
    policy = load_policy(Path(domain.policy))
    notes = policy_notes(policy)
    assert rendered.batches
    needed = [domain.case_id, *VERDICT_COLUMNS, *SIGNAL_COLUMNS, "reasons", "rules_fired"]
    needed += evidence_columns(domain, notes)
    codes = [(rc.code, rc.text) for rc in domain.model.reason_codes.values()]
    codes += [(rule.id, rule.text) for rule in policy.rules]
    codes += [(code, text) for code, text in notes.route_codes.items()]
    seen_no_reason = False
    for batch in rendered.batches:
        text = rendered.texts[batch.batch_id]
        start = f"{domain.case_id}\t{VERDICT_COLUMNS[0]}"
        header = next((line for line in text.splitlines() if start in line), "")
        columns = header[header.find(start) :].split("\t")
        missing = [c for c in needed if c not in columns]
        assert not missing, f"{batch.batch_id}: columns not rendered: {missing}"
        assert columns[: 1 + len(VERDICT_COLUMNS)] == [domain.case_id, *VERDICT_COLUMNS]
        flat = " ".join(text.split())
        for code, meaning in codes:
            assert f"{code} {' '.join(meaning.split())}" in flat, f"{batch.batch_id}: {code}"
        for verdict in domain.review.verdicts:
            assert verdict in flat
        assert "OTHER None of the above" in flat
        # The model's reasons appear in rows with the value behind them, whole.
        assert re.search(r"\b[A-Z]\d\d: [^\t\[]+ \[\w+ = [^\]]+\]", text), batch.batch_id
        seen_no_reason |= "No model reason: no input raises" in flat
        assert rendered.pdfs[batch.batch_id].startswith(b"%PDF")
    assert seen_no_reason, "the QA-sampled case without a model reason says why"


def test_a_restricted_role_sees_the_income_only_as_a_band(rendered: Rendered) -> None:
    """Adversarial: neither the income nor the ratio that gives it back (loan / ratio) reaches
    the rendering of a role whose masking bands the income."""
    domain = rendered.domain
    income = {"consumer_credit": "annual_income", "lending_club": "annual_inc"}[domain.name]
    settings = review_settings(domain)
    assert settings is not None
    restricted = [b for b in rendered.batches if b.role and income in settings.masking_for(b.role)]
    assert restricted
    for batch in restricted:
        text = rendered.texts[batch.batch_id]
        cells = {cell for line in text.splitlines() for cell in line.split("\t")}
        mine = rendered.cases.filter(pl.col(domain.case_id).is_in(list(batch.case_ids)))
        for amount, ratio in mine.select(income, "loan_to_income").iter_rows():
            assert not {f"{amount:,.0f}", f"{amount:.0f}", f"{amount:,.2f}"} & cells
            exact = {f"{ratio:.4g}", f"{ratio!r}", f"{ratio:.2f}"}
            assert not exact & cells and f"loan_to_income = {ratio:.4g}]" not in text
            assert f"= {amount:,.0f}" not in text
        assert re.search(r"\d[\d,]* - < [\d,]+", text)  # the income's bands
        assert re.search(r"loan_to_income = 0\.\d+ - < \d", text)  # the ratio's, in reasons
