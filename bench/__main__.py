"""`python -m bench <benchmark> [options]`: every benchmark of hitl-gate by name.

`pipeline`, `generate`, `backfill`, `memory` and `metrics_memory` take options (`--help`); the
others run their fixed scenario. Each compares against a baseline measured in the same run and
appends its section to BENCHMARKS.md.
"""

from __future__ import annotations

import inspect
import sys
from importlib import import_module

BENCHMARKS = {
    "pipeline": "bench.pipeline",
    "generate": "bench.generate",
    "backfill": "bench.backfill",
    "memory": "bench.memory",
    "metrics_memory": "bench.metrics_memory",
    "validation": "bench.validation",
    "features_models": "bench.features_models",
    "policy": "bench.policy",
    "review": "bench.review",
    "audit": "bench.audit",
    "audit_seal": "bench.audit_seal",
    "seal_refresh": "bench.seal_refresh",
    "portal": "bench.portal",
    "replica": "bench.replica",
    "small_refresh": "bench.small_refresh",
    "registry": "bench.registry",
    "workbook": "bench.workbook",
    "review_export": "bench.review_export",
    "event_log": "bench.event_log",
    "demo": "bench.demo",
    "audit_opens": "bench.audit_opens",
    "audit_connections": "bench.audit_connections",
    "report": "bench.report",
    "gx_checks": "bench.gx_checks",
    "mlflow_store": "bench.mlflow_store",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        raise SystemExit(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [options]")
    entry = import_module(BENCHMARKS[sys.argv[1]]).main
    if inspect.signature(entry).parameters:
        entry(sys.argv[2:])
    else:
        entry()


if __name__ == "__main__":
    main()
