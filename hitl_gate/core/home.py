"""Where hitl-gate keeps its state: one home folder, plus the landing zone and review folder.

Every resource derives its paths from a `HitlPaths`, so a test (or a second deployment) moves
the whole installation by pointing at another home. Defaults suit a laptop checkout:
`.hitl/` for state, `data/landing/` for arriving files, `review_exports/` for reviewers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hitl_gate.core.domain import PROJECT_ROOT

HOME_ENV = "HITL_HOME"
LANDING_ENV = "HITL_LANDING_DIR"
REVIEW_ENV = "HITL_REVIEW_DIR"


@dataclass(frozen=True)
class HitlPaths:
    """Every folder and file location hitl-gate reads or writes."""

    home: Path
    landing: Path
    review: Path

    @classmethod
    def from_env(cls, home_override: str | Path | None = None) -> HitlPaths:
        """Paths from `home_override`, `HITL_HOME`, `HITL_LANDING_DIR`, `HITL_REVIEW_DIR`.

        When a home is given, landing and review folders default to inside it, so one
        setting is enough to isolate a whole installation (tests rely on this); with none,
        the laptop defaults apply (`.hitl/`, `data/landing/`, `review_exports/`).
        """
        home_env = str(home_override) if home_override else os.environ.get(HOME_ENV)
        home = Path(home_env) if home_env else PROJECT_ROOT / ".hitl"
        inside = home_env is not None
        landing = os.environ.get(LANDING_ENV) or (
            home / "landing" if inside else PROJECT_ROOT / "data" / "landing"
        )
        review = os.environ.get(REVIEW_ENV) or (
            home / "review_exports" if inside else PROJECT_ROOT / "review_exports"
        )
        return cls(
            home=home.resolve(), landing=Path(landing).resolve(), review=Path(review).resolve()
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
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def audit_key_file(self) -> Path:
        return self.secrets_dir / "audit_ed25519.key"
