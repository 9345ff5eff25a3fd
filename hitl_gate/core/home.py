"""Where hitl-gate keeps its state: one home folder, plus the landing zone and review folder.

Every resource derives its paths from a `HitlPaths`, so a test (or a second deployment) moves
the whole installation by pointing at another home. Defaults suit a laptop checkout:
`.hitl/` for state, `data/landing/` for arriving files, `review_exports/` for reviewers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hitl_gate.core.domain import PROJECT_ROOT


@dataclass(frozen=True)
class HitlPaths:
    """Every folder and file location hitl-gate reads or writes."""

    home: Path
    landing: Path
    review: Path
    witness: Path | None = None  # external checkpoint witness folder (None: `witness_dir`)

    @classmethod
    def at(
        cls,
        home: str | Path | None,
        *,
        landing: Path | None = None,
        review: Path | None = None,
        witness: Path | None = None,
    ) -> HitlPaths:
        """Paths for `home` (None: the laptop default), with optional landing and review folders.

        When a home is given, landing and review folders default to inside it, so one
        setting is enough to isolate a whole installation (tests rely on this); with none,
        the laptop defaults apply (`.hitl/`, `data/landing/`, `review_exports/`). The
        deployment's choice comes from `hitl_gate.core.settings`.
        """
        root = Path(home) if home is not None else PROJECT_ROOT / ".hitl"
        inside = home is not None
        landing = landing or (root / "landing" if inside else PROJECT_ROOT / "data" / "landing")
        review = review or (root / "review_exports" if inside else PROJECT_ROOT / "review_exports")
        return cls(
            home=root.resolve(),
            landing=landing.resolve(),
            review=review.resolve(),
            witness=witness.resolve() if witness else None,
        )

    @property
    def audit_db(self) -> Path:
        return self.home / "audit.duckdb"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def review_batches(self) -> Path:
        return self.review / "batches"

    @property
    def review_inbox(self) -> Path:
        return self.review / "inbox"

    @property
    def review_archive(self) -> Path:
        return self.review / "archive"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def replica_dir(self) -> Path:
        """The auditors' replica of the audit database (`hitl_gate.audit.replica`)."""
        return self.home / "replica"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def segments_dir(self) -> Path:
        """Per-run audit segments (`hitl_gate.audit.run_seal`; docs/audit.md, "Room to grow")."""
        return self.home / "audit" / "segments"

    @property
    def witness_dir(self) -> Path:
        """Where checkpoints are witnessed: configured, else a sibling of the home (outside it,
        so deleting or replacing the home leaves the witness; docs/audit.md, "Witnesses")."""
        return self.witness or self.home.parent / f"{self.home.name}-witness"

    @property
    def audit_key_file(self) -> Path:
        return self.secrets_dir / "audit_ed25519.key"
