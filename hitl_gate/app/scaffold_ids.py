"""Case ids a scaffolded domain gives its cases: prefixed by the domain unless already namespaced.

A case id is unique within its domain only. Bare row numbers (`17`) repeat in every domain
onboarded from an R or pandas export, and then `hitl audit trace 17`, reviewers and auditors
must be told which `17` is meant. So by default the scaffold prefixes the ids with the domain
(`CLAIMS-17`) and declares a `case_id_pattern` that requires the prefix, so a landing file
carrying bare ids is quarantined with the reason rather than mixed up with another domain's.
Ids that already carry a letter prefix of their own (`CLM-00017`) are kept as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from hitl_gate.core.domain import DEFAULT_CASE_ID_PATTERN

MAX_ID_LENGTH = 200  # as DEFAULT_CASE_ID_PATTERN
_ID_BODY = "[A-Za-z0-9_.-]"  # explicit ASCII class: `\w` matches Unicode look-alikes
_NAMESPACED = re.compile(r"^[A-Za-z]{2,}[A-Za-z0-9]*[-_.]")  # `CLM-`, `LC18Q1-`, `app_`


@dataclass(frozen=True)
class CaseIdPlan:
    """How sample rows get ids (`sample.case_id`), the declared pattern, and what was decided."""

    spec: dict[str, Any]
    pattern: str
    note: str


def domain_prefix(name: str) -> str:
    """`claims_2024` -> `CLAIMS_2024-`: a domain name is lower case letters, digits and `_`."""
    return f"{name.upper()}-"


def prefixed_pattern(prefix: str) -> str:
    """A full-match pattern for `prefix` + an ASCII id body, at most MAX_ID_LENGTH in all.

    A domain prefix holds only `A-Z 0-9 _ -`, none special outside a class, so it is written
    as is and the declaration stays readable.
    """
    return f"{prefix}{_ID_BODY}{{1,{MAX_ID_LENGTH - len(prefix)}}}"


def _already_namespaced(values: pl.Series) -> bool:
    """Text ids that all start with the same letter prefix (`CLM-`, `LC18Q1-`)."""
    if values.dtype != pl.String:
        return False
    heads = values.str.extract(f"({_NAMESPACED.pattern})", 1)
    return heads.null_count() == 0 and heads.n_unique() == 1


def sample_ids(frame: pl.DataFrame, spec: dict[str, Any]) -> pl.Series:
    """The ids the demo landing gives the sample rows under `spec` (as `demo_data` does)."""
    column = spec.get("column")
    values = frame[column] if column else pl.int_range(1, frame.height + 1, eager=True)
    text = values.cast(pl.String)
    if spec.get("width"):
        text = text.str.zfill(spec["width"])
    return (spec.get("prefix", "") + text).alias("case_id")


def plan_case_ids(frame: pl.DataFrame, name: str, column: str | None) -> CaseIdPlan:
    """Ids for the sample's rows from `column` (None: generated from row numbers).

    Raises ValueError when a sample id would not match the declared pattern: a domain whose own
    history would be quarantined is not a starting point.
    """
    prefix = domain_prefix(name)
    if column is None:
        spec: dict[str, Any] = {"prefix": prefix, "width": len(str(frame.height))}
        pattern, note = prefixed_pattern(prefix), f"case ids generated: {prefix}<row number>"
    elif _already_namespaced(frame[column]):
        spec, pattern = {"column": column}, DEFAULT_CASE_ID_PATTERN
        note = f"case ids from {column} as they are (they carry their own prefix)"
    else:
        spec, pattern = {"column": column, "prefix": prefix}, prefixed_pattern(prefix)
        note = (
            f"case ids are {prefix}<{column}>, so they never repeat another domain's; "
            f"landing files must carry them so (case_id_pattern)"
        )
    ids = sample_ids(frame, spec)
    bad = ids.filter(~ids.str.contains(f"^(?:{pattern})$"))
    if bad.len():
        raise ValueError(
            f"{bad.len()} sample id(s) from {column} do not match {pattern} "
            f"(first: {bad[0]!r}); choose another column with --case-id"
        )
    return CaseIdPlan(spec, pattern, note)
