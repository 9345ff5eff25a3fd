"""Every `hitl ...` command form the README and docs/*.md show RUNS on the demo home (issue 21.2).

tests/unit/app/test_cli_docs.py checks that the CLI parses each documented line; here each one
is executed, in the order the docs tell it, in-process on one restored demo home (the home is
restored once per documentation file, so one guide's story never leans on another's), and must
exit 0 with no traceback. What the docs leave to the reader is filled in from the demo home
(`demo_values`): a day the demo ran, a case id, a landing file, the demo people's keys for
`KEY`, `~/.ssh/id_ed25519` and `$K`, fresh SSH keys for `ann.pub` and the like, the audit
public key for `HEX`. A documented `.pub` signing key is used as documented: its private half
sits in an `ssh-agent` started for the test.

Every documented line runs unless `NOT_RUN` gives the reason it is not (it builds a home,
trains a model or runs pipeline days: minutes each, and other e2e tests run those), so a new
form is run, and must work, or is explained. A form the demo home refuses as the docs say it
must (a model version it does not have) is listed in `REFUSED` with the one-line refusal
expected, checked as strictly as a success.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.app.demo_identities import DEMO_ADMIN, DEMO_KEYS_FOLDER
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import PROJECT_ROOT
from hitl_gate.core.home import HitlPaths
from tests.e2e.home_templates import HomeTemplate
from tests.unit.app.test_cli_docs import COMMANDS, PLACEHOLDER_VALUES, argv_forms

DOMAIN = "consumer_credit"
ONBOARDING = "scaffolds a new domain and trains it (minutes): tests/e2e/test_onboarding.py"
PIPELINE_DAY = "runs a pipeline day (about a minute): test_auditor_replica.py, test_e2e.py"
TRAINING = "trains a model (minutes): tests/e2e/test_model_governance_e2e.py"
# Documented forms not run here (text after `hitl`, comment cut), with the reason.
NOT_RUN = {
    "demo": "builds the whole demo home: the demo template every e2e test uses runs it",
    "domain init NAME --from FILE --label COL --positive V [--review-share 0.15]": ONBOARDING,
    "domain init claims --from claims_history.csv --label fraud --positive yes": ONBOARDING,
    "domain check claims": ONBOARDING,
    "--domain claims run --partition 2024-02-01 --to 2024-02-28 --ingest-only": ONBOARDING,
    "--domain claims train": ONBOARDING,
    "--domain claims run --partition 2024-02-01 --to 2024-02-28": ONBOARDING,
    "audit trace CLM-00001": ONBOARDING,
    "run --partition 2018-01-15 [--to D]": PIPELINE_DAY,
    "run --partition 2018-03-05": PIPELINE_DAY,
    "train": TRAINING,
    "model train --family gradient_boosting": TRAINING,
    "review ingest FILE": "takes a reviewer's signed verdict file: tests/e2e/test_e2e.py",
    "policy backtest policies/consumer_credit/v2.yaml --from 2018-01-01 --to 2018-03-31": (
        "replays three months of routing (minutes): tests/e2e/test_policy_backtest.py"
    ),
}

# Documented forms that the demo home refuses, as the docs say it must: (exit code, text of the
# one-line refusal, why). The refusal is checked as strictly as a success.
UNKNOWN_VERSION = "the demo registers one version per model: governance refuses another one"
REFUSED = {
    "model promote consumer_credit_pd 3 --alias challenger --signing-key KEY --reason Q2 review": (
        1, "REFUSED: consumer_credit_pd has no version 3", UNKNOWN_VERSION
    ),
    "model promote consumer_credit_pd 2 --signing-key KEY": (
        1, "REFUSED: consumer_credit_pd has no version 2", UNKNOWN_VERSION
    ),
}  # fmt: skip
NOTHING_QUARANTINED = (1, "nothing quarantined for", "the demo home quarantined nothing")


@dataclass
class DemoValues:
    """What the docs leave to the reader, taken from the demo home."""

    home: HitlPaths
    keys: Path
    tokens: dict[str, str]
    quarantined: bool

    def key(self, person: str) -> str:
        return str(self.keys / f"{person}_ed25519")


def demo_values(home: HitlPaths, scratch: Path) -> DemoValues:
    with audit_connection(home.audit_db, read_only=True) as con:
        day, case_id, source = con.execute(
            "SELECT partition_date::VARCHAR, case_id, source_file FROM decisions "
            "WHERE domain = ? ORDER BY partition_date, case_id LIMIT 1",
            [DOMAIN],
        ).fetchall()[0]
        (signer,) = con.execute(  # the key the newest checkpoint is signed with
            "SELECT public_key FROM audit_checkpoints ORDER BY last_seq DESC LIMIT 1"
        ).fetchall()[0]
        quarantined = con.execute(
            "SELECT file_sha256 FROM quarantine WHERE domain = ? LIMIT 1", [DOMAIN]
        ).fetchall()
    keys = home.home / DEMO_KEYS_FOLDER
    tokens = {
        "D": day,
        "CASE_ID": case_id,
        "SHA256|CASE_ID": quarantined[0][0][:12] if quarantined else case_id,
        "FILE": source,
        "DIR": str(scratch / "bundle"),
        "NAME": DOMAIN,
        "VERSION": "1",
        "SQL": "SELECT domain, count(*) FROM decisions GROUP BY ALL",
        "...": str(keys / f"{DEMO_ADMIN}_ed25519"),
        "~/.ssh/id_ed25519.pub": _new_key(scratch, "root"),
        "bob": BOB,
    }
    for name in ("ann", "ann-laptop", "ann-new"):  # the docs' people's new keys
        tokens[f"{name}.pub"] = _new_key(scratch, name)
    tokens["--old SHA256:..."] = _fingerprint(tokens["ann.pub"])  # rotated away from
    tokens["--key SHA256:..."] = _fingerprint(tokens["ann-laptop.pub"])  # revoked
    tokens["HEX"] = signer
    return DemoValues(home, keys, tokens, bool(quarantined))


BOB = "demo-model-owner"  # the docs' `bob`: a demo person who is given a grant and a calendar
SIGNERS = {  # whose key `KEY` or `~/.ssh/id_ed25519` stands for, per command (group)
    "model": "demo-model-owner",
    "retention": "demo-compliance",
    "policy": "demo-policy-owner",
    "policy approve": "demo-policy-approver",  # "a second person, on their machine"
}
PUBLIC_IN_AGENT = {"ann.pub": "demo-policy-owner", "bob.pub": "demo-policy-approver"}


def fill(argv: list[str], values: DemoValues) -> list[str]:
    """`argv` with the docs' placeholders replaced by values of the demo home."""
    group = argv[0] if argv else ""
    signer = SIGNERS.get(" ".join(argv[:2]), SIGNERS.get(group, DEMO_ADMIN))
    filled = []
    for position, word in enumerate(argv):
        option = argv[position - 1] if position else ""
        if word in ("KEY", "~/.ssh/id_ed25519"):
            word = values.key(signer)
        elif word == "NAME" and group == "model":
            word = f"{DOMAIN}_pd"
        elif group == "policy" and word in PUBLIC_IN_AGENT:  # a `.pub`, its key in the agent
            word = values.key(PUBLIC_IN_AGENT[word]) + ".pub"
        elif f"{option} {word}" in values.tokens:
            word = values.tokens[f"{option} {word}"]
        elif word in values.tokens:
            word = values.tokens[word]
        elif word.startswith("policies/"):  # the docs run from the project's root
            word = str(PROJECT_ROOT / word)
        filled.append(word.replace("$K", str(values.keys)))
    return filled


def _new_key(folder: Path, name: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", folder / name],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return str(folder / f"{name}.pub")


def _fingerprint(public: str) -> str:
    found = subprocess.run(
        ["ssh-keygen", "-lf", public], check=True, capture_output=True, text=True
    )
    return found.stdout.split()[1]


@pytest.fixture
def ssh_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An `ssh-agent` of this test's own (the docs sign with a `.pub` whose key it holds)."""
    socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
    yield socket
    agent.terminate()
    agent.wait(timeout=10)


def key_text(text: str) -> str:
    """A documented line as `NOT_RUN` names it: the words, the comment cut."""
    return " ".join(shlex.split(text, comments=True))


def test_every_documented_command_runs_on_the_demo_home(
    demo_template: HomeTemplate,
    demo_home: HitlPaths,
    tmp_path: Path,
    ssh_agent: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    documented = {key_text(text) for _, text in COMMANDS}
    listed = set(NOT_RUN) | set(REFUSED)
    assert listed <= documented, f"no longer documented: {listed - documented}"
    monkeypatch.setenv("HITL_HOME", str(demo_home.home))
    monkeypatch.setattr("builtins.input", _quit)  # `audit sql` with no -c: a prompt
    monkeypatch.setitem(PLACEHOLDER_VALUES, "VERSION", "VERSION")  # the demo's own: `tokens`
    failures, ran, current_file = [], 0, None
    scratch = tmp_path / "work"
    for where, text in COMMANDS:
        if key_text(text) in NOT_RUN:
            continue
        doc = where.split(":")[0]
        if doc != current_file:  # each guide's story on the pristine demo home
            if current_file is not None:
                demo_template.restorer.restore()
            current_file = doc
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            monkeypatch.chdir(scratch)
            values = demo_values(demo_home, scratch)
            _agent_holds(values)
        for argv in argv_forms(text):
            filled = fill(argv, values)
            choices = next((w for w in filled if "|" in w and not w.startswith("-")), None)
            runs = [filled]
            if choices is not None:  # `policy validate|whatif|...`: each one's help
                prefix = filled[: filled.index(choices)]
                runs = [[*prefix, name, "--help"] for name in choices.split("|")]
            refused = REFUSED.get(key_text(text), (0, "", ""))
            if argv[:2] == ["quarantine", "show"] and not values.quarantined:
                refused = NOTHING_QUARANTINED
            expected_code, expected_text, _why = refused
            for run in runs:
                code, message = _exit_code(run)
                out, err = capfd.readouterr()
                err += message
                ran += 1
                refusal_ok = expected_code == 0 or (
                    len(err.strip().splitlines()) == 1 and expected_text in err
                )
                if code != expected_code or not refusal_ok or "Traceback" in out + err:
                    failures.append(f"{where}: hitl {shlex.join(run)} -> {code}: {err.strip()}")
    assert not failures, "\n".join(failures)
    assert ran > 40


def _exit_code(argv: list[str]) -> tuple[int, str]:
    """The exit code of `hitl argv`, and the message Python would print for it on stderr."""
    try:
        main(argv)
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            return stop.code or 0, ""
        return 1, f"{stop.code}\n"
    return 0, ""


def _quit(_prompt: str = "") -> str:
    return ".quit"


def _agent_holds(values: DemoValues) -> None:
    """The agent holds the policy owner's and approver's keys; `ann.pub` and `bob.pub` of the
    halt section stand for their public halves."""
    for person in ("demo-policy-owner", "demo-policy-approver"):
        subprocess.run(
            ["ssh-add", "-q", values.key(person)], check=True, env=os.environ, capture_output=True
        )
