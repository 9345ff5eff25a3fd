"""A run that ends before its end-of-run seal seals the day-partitioned rows it wrote.

With segments on (`HitlSettings.audit_segments`, docs/audit.md "Room to grow") a run's seal
picks the rows of a day-partitioned table (`domain`, `partition_date`) of its own domain and
days only (`run_seal.Scope`), so that runs of other days or domains seal theirs concurrently.
A run whose selection has no end-of-run seal (`hitl run --ingest-only`, how a new domain
loads its history before its first model, or the same stages materialised from the Dagster
UI) would leave the rows it wrote for days no later run covers unsealed for ever: no other
run's pick takes them. On the single chain the next seal of any run takes every unseen row,
so nothing is left there.

So the stage that wrote such rows seals them itself when the run will not
(`assets/partial_seal.py`, `run_seal.seal_days_through_segment` with `chain=False`):
through a segment of its own over the same domain and days, exactly as the end-of-run seal
would have, with the same claim, pick, seal and fold
(`run_seal.seal_with_segment`). It is sound under concurrent runs for the same reasons that
seal is: the pick takes only rows no seal has seen and no live claim holds, records them as
pending under its claim and as seen only at its fold, and a seal killed half-way leaves its
rows to the next pick. Only the segment's part runs (`chain=False`): insert-once rows are
sealed on the single chain by every run's seal, whatever its days, so none is left behind,
and a forged insert-once row elsewhere refuses the end-of-run seal (which names it), never
the ingestion of a day.
"""

from __future__ import annotations


def partial_run_id(run_id: str, stage: str) -> str:
    """The run id a stage's own seal logs under (`<run>:<stage>`, as the execution step's
    `<run>:executed`): the entries say which step of which run sealed them."""
    return f"{run_id}:{stage}"
