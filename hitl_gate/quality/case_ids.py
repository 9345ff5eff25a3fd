"""Canonical case ids: one application, one id, whatever bytes it arrived with.

An id is canonical once Unicode NFKC-normalised and trimmed (`' LC-1'`, `'ＬＣ-1'` and `'LC-1'` are
one case). What is still outside the domain's declared pattern after that (a zero-width space,
a control character, a non-breaking hyphen, a Cyrillic look-alike) is not guessed at: the row
is quarantined with check `case_id_form` and the offending characters named, so a look-alike
can never pass as a second application. Uniqueness, within a batch and across partitions, is
then checked on the canonical id.
"""

from __future__ import annotations

import unicodedata

import polars as pl

from hitl_gate.quality.escaped import shown

CASE_ID_FORM_CHECK = "case_id_form"
_ASCII = r"^[\x00-\x7f]*$"


def canonical_case_ids(values: pl.Series) -> pl.Series:
    """NFKC and trimmed (Unicode whitespace); ASCII values skip NFKC, which leaves them as is."""
    text = values.cast(pl.String)
    wide = (~text.str.contains(_ASCII)).fill_null(False).arg_true()
    if wide.len():
        text = text.scatter(wide, text.gather(wide).str.normalize("NFKC"))
    return text.str.strip_chars().alias(values.name)


def matches_pattern(canonical: pl.Series, pattern: str) -> pl.Series:
    """Whether each canonical id matches `pattern` in full (null ids count as matching)."""
    return canonical.str.contains(f"^(?:{pattern})$").fill_null(True)


def _character(char: str) -> str:
    name = unicodedata.name(char, "unnamed character")
    return f"U+{ord(char):04X} {name}"


def id_form_message(raw: str, pattern: str) -> str:
    """Why `raw` is not a canonical case id: the characters to blame, in words."""
    canonical = unicodedata.normalize("NFKC", raw).strip()
    if not canonical:
        return "is not a case id: nothing but whitespace or invisible characters"
    odd = [
        c
        for c in dict.fromkeys(canonical)
        if not c.isascii() or not c.isprintable() or unicodedata.category(c).startswith(("C", "Z"))
    ]
    blame = (
        "holds " + ", ".join(_character(c) for c in odd[:5])
        if odd
        else f"canonical form '{shown(canonical)}' does not match"
    )
    return (
        f"is not a canonical case id: {blame}; a case id must match {pattern} "
        "after Unicode NFKC and trimming (look-alike and invisible characters are refused)"
    )
