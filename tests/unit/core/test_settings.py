"""HitlSettings: every `HITL_*` variable parsed once, with errors that name the variable."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from hitl_gate.core.domain import PROJECT_ROOT
from hitl_gate.core.settings import (
    DEFAULT_SLICE_ROWS,
    SEGMENTS_DEFAULT,
    SEGMENTS_ENV,
    ExecutorConfigError,
    HitlSettings,
    SettingsError,
)


def test_defaults_are_the_laptop_checkout() -> None:
    settings = HitlSettings.from_environ({})
    assert settings.paths.home == (PROJECT_ROOT / ".hitl").resolve()
    assert settings.paths.landing == (PROJECT_ROOT / "data" / "landing").resolve()
    assert settings.paths.review == (PROJECT_ROOT / "review_exports").resolve()
    assert settings.domains_dirs == ()
    assert settings.executor == "in_process" and settings.max_concurrent is None
    assert settings.slice_rows == DEFAULT_SLICE_ROWS
    assert settings.backfill_days_per_run is None
    assert not settings.audit_key_in_env and not settings.review_key_in_env


def test_a_home_puts_landing_and_review_inside_it(tmp_path: Path) -> None:
    settings = HitlSettings.from_environ({"HITL_HOME": str(tmp_path / "h")})
    assert settings.paths.landing == tmp_path / "h" / "landing"
    assert settings.paths.review == tmp_path / "h" / "review_exports"
    moved = HitlSettings.from_environ(
        {"HITL_HOME": str(tmp_path / "h"), "HITL_LANDING_DIR": str(tmp_path / "in")}
    )
    assert moved.paths.landing == tmp_path / "in"


def test_command_line_values_win_over_the_environment(tmp_path: Path) -> None:
    environ = {"HITL_HOME": str(tmp_path / "env"), "HITL_DOMAINS_DIR": str(tmp_path / "d1")}
    settings = HitlSettings.from_environ(
        environ, home=tmp_path / "cli", domains_dir=tmp_path / "d2"
    )
    assert settings.paths.home == tmp_path / "cli"
    assert settings.domains_dirs == (tmp_path / "d2",)


def test_every_variable_is_read() -> None:
    settings = HitlSettings.from_environ(
        {
            "HITL_DOMAINS_DIR": os.pathsep.join(["/a", "/b", "/a"]),
            "HITL_EXECUTOR": "multiprocess",
            "HITL_MAX_CONCURRENT": "3",
            "HITL_SLICE_ROWS": "37",
            "HITL_BACKFILL_RUNS": "per_partition",
            "HITL_AUDIT_SIGNING_KEY": "ab" * 32,
            "HITL_REVIEW_KEY": " ",
        }
    )
    assert settings.domains_dirs == (Path("/a"), Path("/b"))  # each folder once, in order
    assert (settings.executor, settings.max_concurrent) == ("multiprocess", 3)
    assert settings.slice_rows == 37 and settings.backfill_days_per_run == 1
    assert settings.audit_key_in_env and not settings.review_key_in_env  # blank is unset
    assert HitlSettings.from_environ({"HITL_BACKFILL_RUNS": "7"}).backfill_days_per_run == 7
    assert HitlSettings.from_environ({"HITL_BACKFILL_RUNS": "single"}).backfill_days_per_run is None
    assert HitlSettings.from_environ({"HITL_EXECUTOR": "pkg.mod:executor"}).executor == (
        "pkg.mod:executor"
    )


@pytest.mark.parametrize(
    ("environ", "error", "message"),
    [
        ({"HITL_EXECUTOR": "threads"}, ExecutorConfigError, "HITL_EXECUTOR='threads'"),
        ({"HITL_MAX_CONCURRENT": "0"}, ExecutorConfigError, "HITL_MAX_CONCURRENT='0'"),
        ({"HITL_MAX_CONCURRENT": "two"}, ExecutorConfigError, "whole number >= 1"),
        ({"HITL_SLICE_ROWS": "-5"}, SettingsError, "HITL_SLICE_ROWS='-5'"),
        ({"HITL_BACKFILL_RUNS": "0"}, SettingsError, "HITL_BACKFILL_RUNS='0'"),
        ({"HITL_BACKFILL_RUNS": "weekly"}, SettingsError, "single, per_partition"),
        ({"HITL_AUDIT_SEGMENTS": "maybe"}, SettingsError, "HITL_AUDIT_SEGMENTS='maybe'"),
    ],
)
def test_bad_values_fail_naming_the_variable(environ, error, message) -> None:
    with pytest.raises(error, match=message):
        HitlSettings.from_environ(environ)


def test_settings_round_trip_through_their_variables(tmp_path: Path) -> None:
    """What a run's step processes rebuild the job from (hitl_gate.app.runner)."""
    settings = HitlSettings.from_environ(
        {
            "HITL_HOME": str(tmp_path / "home"),
            "HITL_REVIEW_DIR": str(tmp_path / "review"),
            "HITL_DOMAINS_DIR": str(tmp_path / "domains"),
            "HITL_EXECUTOR": "multiprocess",
            "HITL_MAX_CONCURRENT": "2",
            "HITL_SLICE_ROWS": "100",
            "HITL_BACKFILL_RUNS": "3",
            "HITL_AUDIT_TOKEN_DIR": str(tmp_path / "token"),
            "HITL_AUDIT_TOKEN_LABEL": "audit-hsm",
            "HITL_AUDIT_KEY_LABEL": "cp-2027",
            "HITL_AUDIT_PKCS11_MODULE": "/opt/vendor/libpkcs11.so",
            "HITL_AUDIT_TRUSTED_KEY": "ab" * 32,
            "HITL_AUDIT_TOKEN_PIN": "1234",
            "HITL_AUDIT_SEGMENTS": "on",
        }
    )
    assert settings.audit_segments
    assert settings.audit_keys.pin_in_env and settings.audit_keys.key_label == "cp-2027"
    assert HitlSettings.from_environ(settings.to_environ()) == replace(
        settings, audit_keys=replace(settings.audit_keys, pin_in_env=False)
    )
    assert HitlSettings.from_environ(HitlSettings.from_environ({}).to_environ()) == (
        HitlSettings.from_environ({})
    )
    secrets = {"HITL_AUDIT_SIGNING_KEY", "HITL_REVIEW_KEY", "HITL_AUDIT_TOKEN_PIN"}
    assert not secrets & set(settings.to_environ())  # secrets never travel


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SEGMENTS_DEFAULT),
        ("   ", SEGMENTS_DEFAULT),
        ("on", True),
        ("ON", True),
        (" On ", True),
        ("1", True),
        ("true", True),
        ("yes", True),
        ("off", False),
        ("OFF", False),
        ("0", False),
        ("false", False),
        ("no", False),
    ],
)
def test_the_segments_switch_reads_every_spelling(text: str, expected: bool) -> None:
    assert HitlSettings.from_environ({SEGMENTS_ENV: text}).audit_segments is expected


def test_the_segments_default_is_one_constant() -> None:
    """Unset, the setting is `SEGMENTS_DEFAULT`, whether parsed or built from paths alone."""
    assert HitlSettings.from_environ({}).audit_segments is SEGMENTS_DEFAULT
    parsed = HitlSettings.from_environ({})
    assert HitlSettings(paths=parsed.paths).audit_segments is SEGMENTS_DEFAULT


@pytest.mark.parametrize("switched_on", [True, False])
def test_the_segments_switch_travels_explicitly(switched_on: bool) -> None:
    """Step processes rebuild the settings from `to_environ`: an empty value there would mean
    "the default" in the child, so a parent switched against the default would run children
    that seal the other way. Both values are written out, and each comes back as it left."""
    settings = replace(HitlSettings.from_environ({}), audit_segments=switched_on)
    written = settings.to_environ()[SEGMENTS_ENV]
    assert written == ("on" if switched_on else "off")
    assert HitlSettings.from_environ(settings.to_environ()).audit_segments is switched_on


def test_settings_are_frozen() -> None:
    settings = HitlSettings.from_environ({})
    with pytest.raises(AttributeError):
        settings.slice_rows = 5  # type: ignore[misc]


def test_audit_key_settings_default_to_the_token_and_name_bad_values() -> None:
    keys = HitlSettings.from_environ({}).audit_keys
    assert keys.signer == "token" and keys.trusted_key == "" and keys.trusted_key_file is None
    legacy = HitlSettings.from_environ({"HITL_AUDIT_SIGNING_KEY": "11" * 32}).audit_keys
    assert legacy.signer == "key_file"  # an injected seed keeps the signer it was made for
    with pytest.raises(SettingsError, match="HITL_AUDIT_SIGNER"):
        HitlSettings.from_environ({"HITL_AUDIT_SIGNER": "usb-stick"})
    with pytest.raises(SettingsError, match="HITL_AUDIT_TRUSTED_KEY"):
        HitlSettings.from_environ({"HITL_AUDIT_TRUSTED_KEY": "not-a-key"})
