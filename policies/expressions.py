"""Rule conditions: SQL-style boolean text parsed into vectorised Polars expressions.

Conditions are written by risk people, so they are plain SQL (`pd >= 0.08 OR
public_record_bankrupt > 0`), parsed by `pl.sql_expr` into a Polars expression: never `eval`,
so a policy file cannot run code. Type problems (a string compared with a number) only show
when Polars resolves the expression against a schema, which is why `schema_problem` evaluates
it on an empty frame of that schema instead of trusting the parse alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl


def compile_condition(sql: str) -> pl.Expr:
    """Parse one condition; raises whatever Polars raises when the text is not an expression."""
    expr = pl.sql_expr(sql)
    if not isinstance(expr, pl.Expr):  # a list means several comma-separated expressions
        raise ValueError("expected a single expression")
    return expr


def parse_problem(sql: str) -> str | None:
    """Why `sql` does not parse as one expression, or None when it does."""
    if not sql.strip():
        return "condition is empty"
    try:
        compile_condition(sql)
    except Exception as exc:  # Polars raises several types for bad SQL
        return f"condition does not parse: {_first_line(exc)}"
    return None


def schema_problem(sql: str, schema: Mapping[str, pl.DataType]) -> str | None:
    """Why `sql` is not a boolean condition over `schema`, or None when it is."""
    problem = parse_problem(sql)
    if problem is not None:
        return problem
    expr = compile_condition(sql)
    unknown = sorted({c for c in expr.meta.root_names() if c not in schema})
    if unknown:
        return f"condition uses unknown columns {unknown}"
    try:
        dtype = pl.DataFrame(schema=dict(schema)).select(expr.alias("c")).schema["c"]
    except Exception as exc:  # type errors surface as several Polars types
        return f"condition cannot be evaluated on the case columns: {_first_line(exc)}"
    if dtype != pl.Boolean:
        return f"condition is not boolean (it yields {dtype})"
    return None


def _first_line(exc: Exception) -> str:
    """Polars errors carry a multi-line plan dump; the first line is the useful part."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
