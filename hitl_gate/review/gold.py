"""Gold cases: past cases with a known right answer, seeded into batches to score reviewers.

A gold case is a past case whose right verdict is known: executed as an approval and followed
by an observed outcome (a default, one of the label's positive values, says `decline` was
right; repayment says `approve`), or declared by a named person (`review_gold_declared`,
which wins). Each queue seeds `gold_rate` (review.yaml, default 0 = off) of its single-review
cases, rounded down, as gold.

A reviewer must not be able to tell them apart, or they would score the reviewer's care on gold
cases only. So a gold case is the source case's own routed row (same columns, masked the same
way) under a new case id of the same shape as the day's real ids (the prefix they share kept,
then each digit replaced by a digit, each letter by a letter of the same case, punctuation
kept), with a review priority drawn
from the queue's real cases: it sorts among them like any case. Membership is recorded only in
`review_gold_cases` (sealed, insert-once), never in the batch. Everything is keyed by the
export key and the day, so a re-run seeds the same ids and the batches are reused.

Gold never executes: the id is never a real case's (checked against every decided case),
intake never makes it final, the sweep never expires it, and execution refuses every id listed
as gold whatever `verdicts` says (`gold_cases.py`, `execution/execute.py`).

Known limit: a gold case shows the source case's model outputs and rules fired; when the model
or policy changed since, a rule text may read "(rule text not supplied)" where a real case's
would not. Seed from recent cases, or declare gold cases from the current policy's period.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, query_frame
from hitl_gate.core.domain import DomainConfig
from hitl_gate.review.settings import ReviewSettings

OUTCOME, DECLARED = "outcome", "declared"
FOUR_EYES = "four_eyes"
MAX_ID_TRIES = 64


def gold_candidates(con: duckdb.DuckDBPyConnection, domain: DomainConfig) -> pl.DataFrame:
    """source_case_id, expected_verdict, basis: declared gold first, then executed approvals
    with a linked outcome; cases already used as gold are left out."""
    positive = list(domain.model.label.positive_values)
    frame: pl.DataFrame = con.sql(
        "WITH declared AS (SELECT case_id, expected_verdict, 'declared' AS basis, 0 AS rank "
        "FROM review_gold_declared WHERE domain = $d), observed AS (SELECT e.case_id, "
        "CASE WHEN bool_or(o.outcome IN (SELECT unnest($pos::VARCHAR[]))) THEN 'decline' "
        "ELSE 'approve' END AS expected_verdict, 'outcome' AS basis, 1 AS rank "
        "FROM executions e JOIN outcomes o ON o.domain = e.domain AND o.case_id = e.case_id "
        "WHERE e.domain = $d AND e.action = 'approve' GROUP BY e.case_id) "
        "SELECT case_id AS source_case_id, arg_min(expected_verdict, rank) AS expected_verdict, "
        "arg_min(basis, rank) AS basis FROM (SELECT * FROM declared UNION ALL "
        "SELECT * FROM observed) WHERE case_id NOT IN (SELECT source_case_id FROM "
        "review_gold_cases WHERE domain = $d) GROUP BY case_id ORDER BY case_id",
        params={"d": domain.name, "pos": positive},
    ).pl()
    return frame


def _keyed(key: bytes, *parts: str) -> bytes:
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).digest()


def shaped_like(template: str, key: bytes, salt: str, keep: int = 0) -> str:
    """A new id of `template`'s shape: its first `keep` characters kept (the prefix every real
    id shares), then digits to digits and letters to letters of the same case."""
    stream = _keyed(key, "gold-id", salt, template)
    while len(stream) < len(template):
        stream += _keyed(key, "gold-id-more", salt, stream.hex())
    out = list(template[:keep])
    for char, byte in zip(template[keep:], stream, strict=False):
        if char.isdigit():
            out.append(str(byte % 10))
        elif char.isascii() and char.isupper():
            out.append(chr(ord("A") + byte % 26))
        elif char.isascii() and char.islower():
            out.append(chr(ord("a") + byte % 26))
        else:
            out.append(char)
    return "".join(out)


def shared_prefix(template: str, real_ids: list[str]) -> int:
    """How much of `template` to keep: the prefix all real ids of its length share; when that
    is the whole id (a lone id), everything before its last run of digits."""
    same = [i for i in real_ids if len(i) == len(template)] or [template]
    prefix = len(os.path.commonprefix(same))
    last_digits = len(template.rstrip("0123456789"))
    return prefix if prefix < len(template) else last_digits


@dataclass
class GoldSeeder:
    """Seeds one export's batches; `members` collects the `review_gold_cases` rows."""

    domain: DomainConfig
    settings: ReviewSettings | None
    key: bytes
    seeded_at: datetime
    candidates: pl.DataFrame
    source_rows: pl.DataFrame  # past routed rows, at least those of the candidates
    taken: set[str]  # every real or gold case id of the domain: never reused
    earlier: pl.DataFrame  # gold seeded before (a re-run of a day seeds the same again)
    members: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        con: duckdb.DuckDBPyConnection,
        domain: DomainConfig,
        settings: ReviewSettings | None,
        key: bytes,
        seeded_at: datetime,
        past_rows: pl.LazyFrame | None,
    ) -> GoldSeeder | None:
        """A seeder when some queue seeds gold and past rows are at hand, else None (off)."""
        if settings is None or past_rows is None:
            return None
        if not any(q.gold_rate > 0 for q in settings.queues.values()):
            return None
        candidates = gold_candidates(con, domain)
        earlier = query_frame(
            con,
            "SELECT case_id, source_case_id, expected_verdict, basis, queue, partition_date "
            "FROM review_gold_cases WHERE domain = ? ORDER BY case_id",
            [domain.name],
        )
        sources = pl.concat([candidates["source_case_id"], earlier["source_case_id"]]).implode()
        case_id = domain.case_id
        rows = past_rows.filter(pl.col(case_id).cast(pl.String).is_in(sources)).collect()
        taken = {
            str(r[0])
            for r in con.execute(
                "SELECT case_id FROM decisions WHERE domain = ? UNION "
                "SELECT case_id FROM review_gold_cases WHERE domain = ?",
                [domain.name, domain.name],
            ).fetchall()
        }
        return cls(domain, settings, key, seeded_at, candidates, rows, taken, earlier)

    def seed(self, cases: pl.DataFrame, day: date) -> pl.DataFrame:
        """`cases` with each queue's share of gold rows added (same columns and types)."""
        if self.settings is None or cases.is_empty():
            return cases
        case_id = self.domain.case_id
        self.taken |= set(cases[case_id].cast(pl.String).to_list())
        added: list[pl.DataFrame] = []
        for queue in sorted(cases["review_queue"].unique().drop_nulls().to_list()):
            conf = self.settings.queues.get(str(queue))
            if conf is None or conf.gold_rate <= 0:
                continue
            real = cases.filter(pl.col("review_queue") == queue)
            if FOUR_EYES in real.columns:
                real = real.filter(~pl.col(FOUR_EYES).fill_null(False))
            wanted = math.floor(real.height * conf.gold_rate)
            if wanted:
                added += self._queue_gold(real, str(queue), day, wanted)
        if not added:
            return cases
        return pl.concat([cases, *added], how="vertical")

    def _queue_gold(
        self, real: pl.DataFrame, queue: str, day: date, wanted: int
    ) -> list[pl.DataFrame]:
        case_id = self.domain.case_id
        again = self.earlier.filter((pl.col("partition_date") == day) & (pl.col("queue") == queue))
        if again.height:  # a re-run of the day: the same gold cases under the same ids
            plan = list(again.select("source_case_id", "case_id").iter_rows())
            return [self._row(real, queue, day, source, gold_id) for source, gold_id in plan]
        used = {str(m["source_case_id"]) for m in self.members}
        at_hand = set(self.source_rows[case_id].cast(pl.String).to_list())
        available = [
            s for s in self.candidates["source_case_id"].to_list() if s in at_hand and s not in used
        ]
        salt = f"{day.isoformat()}|{queue}"
        chosen = sorted(available, key=lambda s: _keyed(self.key, salt, s))[:wanted]
        out = []
        for source in chosen:
            pick = int.from_bytes(_keyed(self.key, salt, "template", source)[:8], "big")
            template = str(real[case_id].cast(pl.String)[pick % real.height])
            keep = shared_prefix(template, real[case_id].cast(pl.String).to_list())
            new_id = self._new_id(template, f"{salt}|{source}", keep)
            out.append(self._row(real, queue, day, source, new_id))
            row = self.candidates.filter(pl.col("source_case_id") == source).row(0, named=True)
            self.members.append(
                {
                    "domain": self.domain.name,
                    "case_id": new_id,
                    "source_case_id": source,
                    "expected_verdict": row["expected_verdict"],
                    "basis": row["basis"],
                    "queue": queue,
                    "partition_date": day,
                    "seeded_at": self.seeded_at,
                }
            )
        return out

    def _row(
        self, real: pl.DataFrame, queue: str, day: date, source: str, gold_id: str
    ) -> pl.DataFrame:
        """The source's routed row as a case of `queue` on `day` under `gold_id`, with a review
        priority drawn from the queue's real cases (keyed, so a re-run draws the same)."""
        case_id = self.domain.case_id
        pick = int.from_bytes(_keyed(self.key, day.isoformat(), queue, "priority", source)[:8])
        priority = real["review_priority"][pick % real.height]
        updates = [
            pl.lit(gold_id).cast(real.schema[case_id]).alias(case_id),
            pl.lit(queue).cast(real.schema["review_queue"]).alias("review_queue"),
            pl.lit(priority).cast(real.schema["review_priority"]).alias("review_priority"),
        ]
        if FOUR_EYES in real.columns:
            updates.append(pl.lit(False).alias(FOUR_EYES))
        if "partition_date" in real.columns:
            updates.append(pl.lit(day).cast(real.schema["partition_date"]).alias("partition_date"))
        row = self.source_rows.filter(pl.col(case_id).cast(pl.String) == source).head(1)
        if row.is_empty():
            raise ValueError(f"gold case {gold_id}: the routed row of {source} is not at hand")
        return row.with_columns(updates).select(real.columns).cast(real.schema)

    def _new_id(self, template: str, salt: str, keep: int) -> str:
        for attempt in range(MAX_ID_TRIES):
            candidate = shaped_like(template, self.key, f"{salt}|{attempt}", keep)
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate
        raise ValueError(f"no free gold case id of the shape of {template!r}")

    def record(self, con: duckdb.DuckDBPyConnection) -> int:
        """Insert the membership rows (insert-once; inside the caller's transaction)."""
        if not self.members:
            return 0
        return insert_new_rows(con, "review_gold_cases", pl.DataFrame(self.members))
