"""Deployment settings: every `HITL_*` variable, read once at the edge into one frozen object.

The edges (`pipelines/definitions.py` for `dagster dev`, the `hitl` command) call
`HitlSettings.from_environ` with the process environment; everything below them takes the
settings (or the paths in them) as arguments, so no library module reads the environment and a
test or a second deployment passes another object instead of rewriting the environment.

The two signing keys are secrets, not settings: their values stay in the environment and reach
the code through resources backed by `dagster.EnvVar`. The settings only record whether each
variable is set, so the resources know to use it instead of the per-home key file. The same
holds for the audit token's PIN. Where the checkpoint key lives (a PKCS#11 token) and which
public key `hitl audit verify` trusts are settings (`AuditKeySettings`, docs/key_custody.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hitl_gate.core.home import HitlPaths

HOME_ENV = "HITL_HOME"
LANDING_ENV = "HITL_LANDING_DIR"
REVIEW_ENV = "HITL_REVIEW_DIR"
DOMAINS_ENV = "HITL_DOMAINS_DIR"
EXECUTOR_ENV = "HITL_EXECUTOR"
MAX_CONCURRENT_ENV = "HITL_MAX_CONCURRENT"
SLICE_ROWS_ENV = "HITL_SLICE_ROWS"
BACKFILL_ENV = "HITL_BACKFILL_RUNS"
AUDIT_KEY_ENV = "HITL_AUDIT_SIGNING_KEY"
REVIEW_KEY_ENV = "HITL_REVIEW_KEY"
WITNESS_ENV = "HITL_AUDIT_WITNESS_DIR"
TSA_ENV = "HITL_AUDIT_TSA_URL"
TSA_ROOTS_ENV = "HITL_AUDIT_TSA_ROOTS"  # PEM root(s) verify checks RFC 3161 stamps against
SEGMENTS_ENV = "HITL_AUDIT_SEGMENTS"  # seal runs through per-run segments (docs/audit.md)
# Whether runs seal through per-run segments when `HITL_AUDIT_SEGMENTS` is unset or empty. The
# one place the default lives: settings always travel to step processes as an explicit `on` or
# `off` (`HitlSettings.to_environ`), so changing it never flips a running installation's children.
# On since 2026-12-06 (docs/audit.md "Room to grow", "On by default").
SEGMENTS_DEFAULT = True
AUDIT_SIGNER_ENV = "HITL_AUDIT_SIGNER"
AUDIT_PKCS11_MODULE_ENV = "HITL_AUDIT_PKCS11_MODULE"
AUDIT_TOKEN_DIR_ENV = "HITL_AUDIT_TOKEN_DIR"
AUDIT_TOKEN_LABEL_ENV = "HITL_AUDIT_TOKEN_LABEL"
AUDIT_KEY_LABEL_ENV = "HITL_AUDIT_KEY_LABEL"
AUDIT_TOKEN_PIN_ENV = "HITL_AUDIT_TOKEN_PIN"
AUDIT_TRUSTED_KEY_ENV = "HITL_AUDIT_TRUSTED_KEY"
AUDIT_TRUSTED_KEY_FILE_ENV = "HITL_AUDIT_TRUSTED_KEY_FILE"

SIGNER_KINDS = ("token", "key_file")
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_TOKEN_LABEL = "hitl-audit"
DEFAULT_KEY_LABEL = "hitl-checkpoint"
SETTLE_ENV = "HITL_LANDING_SETTLE_SECONDS"
# Where people open what the pipeline writes, as URLs the Dagster UI can link to (a browser
# does not follow `file://` links from a web page): the MLflow UI, and a web server that serves
# `<home>/reports/` (`make reports`). Unset: the metadata gives the paths only.
MLFLOW_UI_ENV = "HITL_MLFLOW_UI_URL"
REPORTS_URL_ENV = "HITL_REPORTS_URL"
# A landing file modified less than this long ago is looked at again after it (ingest/listing.py).
DEFAULT_SETTLE_SECONDS = 2.0
GUNZIP_CAP_ENV = "HITL_LANDING_MAX_GUNZIP_BYTES"
# A `.csv.gz`/`.tsv.gz` landing file whose data expands beyond this is refused unread (a
# decompression bomb): 2 GiB is ~6M cases of a wide CSV, well above one day's file.
DEFAULT_MAX_GUNZIP_BYTES = 2 << 30
LOCK_WAIT_ENV = "HITL_AUDIT_LOCK_WAIT_SECONDS"
# How many domains `hitl demo` runs at once, each in a process of its own (docs/demo.md);
# unset: one per domain, at most one per CPU core. 1 runs them one after the other.
DEMO_PARALLEL_ENV = "HITL_DEMO_PARALLEL"
# A landing file modified less than this long ago is looked at again after it (ingest/listing.py).
DEFAULT_SETTLE_SECONDS = 2.0
# How long a run waits for the live audit file while another process holds it (runs take turns
# on short connections; a longer hold is a session in the way, named when the wait ends).
DEFAULT_LOCK_WAIT_SECONDS = 60.0

DEFAULT_SLICE_ROWS = 1_000_000
NAMED_EXECUTORS = ("in_process", "multiprocess")


class SettingsError(ValueError):
    """A `HITL_*` variable holds a value hitl-gate cannot use; the message names it."""


class ExecutorConfigError(SettingsError):
    """`HITL_EXECUTOR` or `HITL_MAX_CONCURRENT` names something that cannot run steps."""


@dataclass(frozen=True)
class AuditKeySettings:
    """Who signs checkpoints and which public key a verifier trusts (docs/key_custody.md).

    `signer` is `token` (a PKCS#11 token: `pkcs11_module`, `token_label`, `key_label`; for
    SoftHSM2 the token's files live in `token_dir`, default `<home>/secrets/softhsm`) or
    `key_file` (the legacy per-home Ed25519 seed, or `HITL_AUDIT_SIGNING_KEY`; explicit only).
    `pin_in_env` records whether `HITL_AUDIT_TOKEN_PIN` is set (a secret, read through
    `dagster.EnvVar`; without it a SoftHSM2 token gets a generated PIN beside its files).
    `trusted_key` (hex) or `trusted_key_file` is the pinned public key `verify` starts from: a
    trust anchor kept outside the home; none configured means verify checks self-consistency.
    """

    signer: str = "token"
    pkcs11_module: str = SOFTHSM_MODULE
    token_dir: Path | None = None
    token_label: str = DEFAULT_TOKEN_LABEL
    key_label: str = DEFAULT_KEY_LABEL
    pin_in_env: bool = False
    trusted_key: str = ""
    trusted_key_file: Path | None = None

    @classmethod
    def from_values(cls, value: Callable[[str], str]) -> AuditKeySettings:
        """Parse the `HITL_AUDIT_*` variables (`value(name)`: stripped, "" when unset).

        Without `HITL_AUDIT_SIGNER`, an injected `HITL_AUDIT_SIGNING_KEY` keeps the key-file
        signer it was made for; everything else signs in the token.
        """
        signer = value(AUDIT_SIGNER_ENV) or ("key_file" if value(AUDIT_KEY_ENV) else "token")
        if signer not in SIGNER_KINDS:
            raise SettingsError(
                f"{AUDIT_SIGNER_ENV}={signer!r}: expected one of {', '.join(SIGNER_KINDS)}"
            )
        trusted = value(AUDIT_TRUSTED_KEY_ENV).lower()
        if trusted and not _is_public_key_hex(trusted):
            raise SettingsError(
                f"{AUDIT_TRUSTED_KEY_ENV}: expected an Ed25519 public key as 64 hex digits"
            )
        return cls(
            signer=signer,
            pkcs11_module=value(AUDIT_PKCS11_MODULE_ENV) or SOFTHSM_MODULE,
            token_dir=_path_or_none(value(AUDIT_TOKEN_DIR_ENV)),
            token_label=value(AUDIT_TOKEN_LABEL_ENV) or DEFAULT_TOKEN_LABEL,
            key_label=value(AUDIT_KEY_LABEL_ENV) or DEFAULT_KEY_LABEL,
            pin_in_env=bool(value(AUDIT_TOKEN_PIN_ENV)),
            trusted_key=trusted,
            trusted_key_file=_path_or_none(value(AUDIT_TRUSTED_KEY_FILE_ENV)),
        )

    def to_environ(self) -> dict[str, str]:
        """The variables that produce these settings (the PIN, a secret, excluded)."""
        return {
            AUDIT_SIGNER_ENV: self.signer,
            AUDIT_PKCS11_MODULE_ENV: self.pkcs11_module,
            AUDIT_TOKEN_DIR_ENV: str(self.token_dir or ""),
            AUDIT_TOKEN_LABEL_ENV: self.token_label,
            AUDIT_KEY_LABEL_ENV: self.key_label,
            AUDIT_TRUSTED_KEY_ENV: self.trusted_key,
            AUDIT_TRUSTED_KEY_FILE_ENV: str(self.trusted_key_file or ""),
        }


@dataclass(frozen=True)
class HitlSettings:
    """Where the installation lives and how runs execute (see the module docstring).

    `executor` is `in_process`, `multiprocess` or `module:attribute` (pipelines/executors.py);
    `max_concurrent` bounds the multiprocess executor (None: the number of CPU cores);
    `slice_rows` is the most cases a sliced step holds at once; `backfill_days_per_run` splits a
    backfill into runs of that many days (None: one run for the whole range);
    `landing_settle_seconds` is how long a landing file's size and mtime must stay unchanged
    before it is taken (0: taken as found), unless its domain declares a marker file;
    `landing_max_gunzip_bytes` is the most bytes a gzip landing file may expand to (ingest).
    `mlflow_ui_url` and `reports_url` are the http(s) base URLs of the MLflow UI and of the
    served reports folder, which Dagster metadata links to (None: paths only).
    `audit_lock_wait_seconds` how long a run waits for the live audit file held by another
    process before failing with the holder named. `audit_segments` seals each run's versioned
    lineage through a segment of its own, so runs seal concurrently (`hitl_gate.audit.run_seal`,
    docs/audit.md "Room to grow"; default `SEGMENTS_DEFAULT`). `demo_parallel` is how many
    domains `hitl demo` runs at once, a process each (None: one per domain, at most one per
    CPU core; 1: one after the other in this process).
    """

    paths: HitlPaths
    domains_dirs: tuple[Path, ...] = ()
    executor: str = "in_process"
    max_concurrent: int | None = None
    slice_rows: int = DEFAULT_SLICE_ROWS
    backfill_days_per_run: int | None = None
    audit_key_in_env: bool = False
    review_key_in_env: bool = False
    tsa_url: str | None = None  # RFC 3161 time-stamping authority for checkpoints (None: off)
    tsa_roots: Path | None = None  # the TSA's root certificate(s), PEM, for verify
    audit_keys: AuditKeySettings = field(default_factory=AuditKeySettings)
    landing_settle_seconds: float = DEFAULT_SETTLE_SECONDS
    landing_max_gunzip_bytes: int = DEFAULT_MAX_GUNZIP_BYTES
    mlflow_ui_url: str | None = None
    reports_url: str | None = None
    audit_lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    audit_segments: bool = SEGMENTS_DEFAULT
    demo_parallel: int | None = None

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        home: str | Path | None = None,
        domains_dir: str | Path | None = None,
    ) -> HitlSettings:
        """Settings from `environ` (the process environment); `home` and `domains_dir` win.

        Empty variables count as unset, so a deployment can blank one out.
        """

        def value(name: str) -> str:
            return environ.get(name, "").strip()

        home_text = str(home) if home else value(HOME_ENV)
        paths = HitlPaths.at(
            Path(home_text) if home_text else None,
            landing=_path_or_none(value(LANDING_ENV)),
            review=_path_or_none(value(REVIEW_ENV)),
            witness=_path_or_none(value(WITNESS_ENV)),
        )
        domains_text = str(domains_dir) if domains_dir else value(DOMAINS_ENV)
        return cls(
            paths=paths,
            domains_dirs=tuple(
                dict.fromkeys(Path(p).resolve() for p in domains_text.split(os.pathsep) if p)
            ),
            executor=_executor(value(EXECUTOR_ENV)),
            max_concurrent=_max_concurrent(value(MAX_CONCURRENT_ENV)),
            slice_rows=_whole_number(SLICE_ROWS_ENV, value(SLICE_ROWS_ENV)) or DEFAULT_SLICE_ROWS,
            backfill_days_per_run=_backfill_days(value(BACKFILL_ENV)),
            audit_key_in_env=bool(value(AUDIT_KEY_ENV)),
            review_key_in_env=bool(value(REVIEW_KEY_ENV)),
            tsa_url=value(TSA_ENV) or None,
            tsa_roots=_path_or_none(value(TSA_ROOTS_ENV)),
            audit_keys=AuditKeySettings.from_values(value),
            landing_settle_seconds=_seconds(SETTLE_ENV, value(SETTLE_ENV), DEFAULT_SETTLE_SECONDS),
            landing_max_gunzip_bytes=_whole_number(GUNZIP_CAP_ENV, value(GUNZIP_CAP_ENV))
            or DEFAULT_MAX_GUNZIP_BYTES,
            mlflow_ui_url=_base_url(MLFLOW_UI_ENV, value(MLFLOW_UI_ENV)),
            reports_url=_base_url(REPORTS_URL_ENV, value(REPORTS_URL_ENV)),
            audit_lock_wait_seconds=_seconds(
                LOCK_WAIT_ENV, value(LOCK_WAIT_ENV), DEFAULT_LOCK_WAIT_SECONDS
            ),
            audit_segments=_switch(SEGMENTS_ENV, value(SEGMENTS_ENV), SEGMENTS_DEFAULT),
            demo_parallel=_whole_number(DEMO_PARALLEL_ENV, value(DEMO_PARALLEL_ENV)),
        )

    def to_environ(self) -> dict[str, str]:
        """These settings as the variables that produce them (secrets excluded).

        A run's step processes rebuild the job from this mapping (`hitl_gate.app.runner`), so
        they see the same installation without the parent process rewriting its environment.
        """
        return {
            HOME_ENV: str(self.paths.home),
            LANDING_ENV: str(self.paths.landing),
            REVIEW_ENV: str(self.paths.review),
            WITNESS_ENV: str(self.paths.witness or ""),
            TSA_ENV: self.tsa_url or "",
            TSA_ROOTS_ENV: str(self.tsa_roots or ""),
            DOMAINS_ENV: os.pathsep.join(str(p) for p in self.domains_dirs),
            EXECUTOR_ENV: self.executor,
            MAX_CONCURRENT_ENV: str(self.max_concurrent or ""),
            SLICE_ROWS_ENV: str(self.slice_rows),
            BACKFILL_ENV: str(self.backfill_days_per_run or "single"),
            **self.audit_keys.to_environ(),
            SETTLE_ENV: repr(self.landing_settle_seconds),
            GUNZIP_CAP_ENV: str(self.landing_max_gunzip_bytes),
            MLFLOW_UI_ENV: self.mlflow_ui_url or "",
            REPORTS_URL_ENV: self.reports_url or "",
            LOCK_WAIT_ENV: repr(self.audit_lock_wait_seconds),
            SEGMENTS_ENV: "on" if self.audit_segments else "off",  # explicit: never the default
            DEMO_PARALLEL_ENV: str(self.demo_parallel or ""),
        }


def _base_url(name: str, text: str) -> str | None:
    """An http(s) base URL without its trailing slash, or None when unset."""
    if not text:
        return None
    if not text.startswith(("http://", "https://")) or len(text.split("//", 1)[1]) == 0:
        raise SettingsError(f"{name}={text!r}: expected an http:// or https:// URL")
    return text.rstrip("/")


def _path_or_none(text: str) -> Path | None:
    return Path(text) if text else None


def _is_public_key_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _executor(text: str) -> str:
    choice = text or "in_process"
    module_name, _, attribute = choice.partition(":")
    if choice not in NAMED_EXECUTORS and not (module_name and attribute):
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}={choice!r}: expected in_process, multiprocess or module:attribute "
            "(e.g. dagster_k8s:k8s_job_executor)"
        )
    return choice


def _switch(name: str, text: str, default: bool) -> bool:
    """On (`1`, `on`, `true`, `yes`), off (`0`, `off`, `false`, `no`), or `default` when unset."""
    lowered = text.lower()
    if not lowered:
        return default
    if lowered in ("0", "off", "false", "no"):
        return False
    if lowered in ("1", "on", "true", "yes"):
        return True
    raise SettingsError(f"{name}={text!r}: expected on or off")


def _seconds(name: str, text: str, default: float) -> float:
    """A duration in seconds, at least 0 (at most a day), or `default` when unset."""
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:
        raise SettingsError(f"{name}={text!r}: expected seconds between 0 and 86400")
    return seconds


def _whole_number(name: str, text: str) -> int | None:
    """A count of at least 1, or None when unset."""
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{name}={text!r}: expected a whole number >= 1")
    return int(text)


def _max_concurrent(text: str) -> int | None:
    try:
        return _whole_number(MAX_CONCURRENT_ENV, text)
    except SettingsError as exc:
        raise ExecutorConfigError(str(exc)) from None


def _backfill_days(text: str) -> int | None:
    """`single` (None: one run), `per_partition` (1 day a run) or a number of days a run."""
    if text in ("", "single"):
        return None
    if text == "per_partition":
        return 1
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise SettingsError(
        f"{BACKFILL_ENV}={text!r}: expected single, per_partition or a number of days per run"
    )
