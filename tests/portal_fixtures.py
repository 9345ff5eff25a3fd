"""A running portal over a real temporary review workspace, for route and browser tests.

The workspace is `tests/review_fixtures.make_workspace` (seven exported cases in two queues, a
real audit database); people are registered with real ssh-keygen keys, the portal's own key
holds `*:portal`, and each reviewer's credential is enrolled with their own signature.

Building a world costs seconds of CPU (argon2id hashes with the production parameters, signed
registry acts, the export, a dozen DuckDB schema checks), so tests take theirs from
`WorldTemplates` (the `portal_worlds` fixture): each kind of world is built once per test
process, and every test gets its own copy of the files in its own folder.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import duckdb
import pyotp
from argon2 import PasswordHasher

with warnings.catch_warnings():  # Starlette prefers httpx2; httpx is the locked client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from hitl_gate.app.portal.app import build_app
from hitl_gate.app.portal.credentials import (
    Credential,
    record_enrolment,
    save_credential,
    sign_enrolment,
)
from hitl_gate.app.portal.events import digest
from hitl_gate.app.portal.verdicts import IntakePlace, Submitter, one_row_file, take_in
from hitl_gate.app.portal.web import PortalConfig
from hitl_gate.app.portal.work import read_batch
from hitl_gate.core.database import audit_connection
from hitl_gate.identity.store import load_registry
from hitl_gate.review.intake.results import IntakeOutcome
from tests.key_pool import pooled_keyring
from tests.review_fixtures import IN_TIME, Workspace, make_workspace, record_export

KEY = b"portal-test-review-key-0123456789"
PASSWORD = "correct horse battery staple"
# The worlds' credentials hash their password with argon2id at its lowest cost: every sign-in
# verifies it (the real `Credential.password_ok`, reading the cost from the hash), and at the
# library's production cost that was about 0.1 s of CPU per sign-in, hundreds of them a run,
# for routes whose tests are about sessions, roles and refusals, not the hash's cost.
# `Credential.new` (the production cost) is what `hitl portal enrol` and the sign-in tests'
# own credentials use.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Clock:
    """The portal's clock, moved by tests."""

    now: datetime = IN_TIME

    def __call__(self) -> datetime:
        return self.now


@dataclass
class PortalWorld:
    """The workspace, the portal's configuration and the people's credentials."""

    ws: Workspace
    config: PortalConfig
    clock: Clock
    credentials: dict[str, Credential] = field(default_factory=dict)

    def enrol(self, person_id: str, signer: str | None = None) -> Credential:
        """Register `person_id` and enrol their credential signed by `signer`'s key."""
        self.ws.person(person_id)
        credential = Credential(person_id, CHEAP_HASHER.hash(PASSWORD), pyotp.random_base32())
        act = sign_enrolment(credential, self.ws.keys.private(signer or person_id), self.clock())
        with audit_connection(self.ws.db) as con:
            record_enrolment(con, load_registry(con), person_id, act, self.clock())
        save_credential(self.config.secrets_dir, credential)
        self.credentials[person_id] = credential
        return credential

    def code(self, person_id: str) -> str:
        return pyotp.TOTP(self.credentials[person_id].totp_secret).at(self.clock())

    def client(self) -> TestClient:
        return TestClient(build_app(self.config), follow_redirects=False)

    def signed_in(self, person_id: str) -> TestClient:
        client = self.client()
        response = sign_in(client, person_id, PASSWORD, self.code(person_id))
        assert response.status_code == 303, response.text
        return client

    def batch(self, queue: str) -> str:
        return self.ws.batches[queue].batch_id

    def events(self, kind: str) -> int:
        """How many `portal_events` of `kind` (sign_in, refused, ...) are logged."""
        return self.ws.count("SELECT count(*) FROM portal_events WHERE kind = ?", [kind])


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient, person_id: str, password: str, code: str):  # noqa: ANN201
    page = client.get("/sign-in")
    return client.post(
        "/sign-in",
        data={"csrf": csrf_of(page.text), "person_id": person_id, "password": password,
              "totp": code},
    )  # fmt: skip


def make_world(
    root: Path, *, enrolled: Sequence[str] = (), assigned: Mapping[str, str] | None = None
) -> PortalWorld:
    """An exported workspace with the portal registered, the `enrolled` people enrolled (in
    that order) and each queue's batch of `assigned` assigned to its person (registered)."""
    ws = make_workspace(root, KEY)
    record_export(ws)
    world = portal_world(ws, root)
    for person in enrolled:
        world.enrol(person)
    for queue, person in (assigned or {}).items():
        ws.person(person)
        ws.assign(world.batch(queue), person)
    return world


def portal_world(ws: Workspace, root: Path) -> PortalWorld:
    """The portal over an exported workspace `ws` (its key `KEY`), the portal registered."""
    ws.person("portal", grants=["*:portal"])
    return _portal_over(ws, root)


def _portal_over(ws: Workspace, root: Path) -> PortalWorld:
    """The portal's configuration over `ws`, whose registry already holds the portal."""
    clock = Clock()
    config = PortalConfig(
        audit_db=ws.db,
        secrets_dir=root / "secrets",
        place=IntakePlace(
            batches_dir=ws.batches_dir,
            archive_dir=ws.archive,
            review_key=KEY,
            portal_key=ws.keys.private("portal"),
        ),
        domains={ws.domain.name: ws.domain},
        clock=clock,
    )
    return PortalWorld(ws, config, clock)


def case_ids(world: PortalWorld, queue: str) -> list[str]:
    with (world.ws.batches[queue].folder / "cases.csv").open(encoding="utf-8") as handle:
        return [row["application_id"] for row in csv.DictReader(handle)]


def portal_verdict(
    world: PortalWorld, person: str, queue: str, case_id: str, verdict: str
) -> IntakeOutcome:
    """What the verdict route does (tested through HTTP elsewhere), for any case."""
    place, batch_id = world.config.place, world.batch(queue)
    batch = read_batch(place.batches_dir, batch_id, person, place.review_key, Path("/nonexistent"))
    answers = {"verdict": verdict, "rationale": f"{person} says {verdict}", "reviewer_id": person}
    data = one_row_file(batch.header, batch.row_of(case_id), answers)
    submitter = Submitter(person, world.ws.keys.fingerprint(person), "password+totp", digest("s"))
    with audit_connection(world.ws.db) as con:
        return take_in(
            con, load_registry(con), place, submitter, domain=world.ws.domain, data=data,
            suffix=".csv", name="portal", now=world.clock(),
            fields={"domain": world.ws.domain.name, "batch_id": batch_id, "case_id": case_id,
                    "verdict": verdict},
        )  # fmt: skip


def file_verdict(
    world: PortalWorld, person: str, queue: str, case_id: str, verdict: str
) -> IntakeOutcome:
    index = case_ids(world, queue).index(case_id)
    answers = {"verdict": verdict, "rationale": f"{person} says {verdict}", "reviewer_id": person}
    path = world.ws.fill_csv(queue, f"{person}-{verdict}.csv", {index: answers})
    return world.ws.ingest(path, signer=person)


WorldKind = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]


class WorldTemplates:
    """Worlds built once per test process under `base`, handed out as copies.

    A copy is the template's files (audit database, keys, credential files, exported batches)
    copied into the test's own folder, so every test starts from a fresh world of its own and
    nothing it writes reaches the template or another test. The one absolute path a world
    stores, each batch's folder in `review_batches`, is rewritten to the copy's; building a
    template checks that no other file or column names the template's folder, so a copy can
    never read or write the original through a stored path.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: dict[WorldKind, PortalWorld] = {}

    def make(
        self, root: Path, *, enrolled: Sequence[str] = (), assigned: Mapping[str, str] | None = None
    ) -> PortalWorld:
        """What `make_world(root, enrolled=..., assigned=...)` builds, copied from a template."""
        kind: WorldKind = (tuple(enrolled), tuple((assigned or {}).items()))
        template = self.built.get(kind)
        if template is None:
            folder = self.base / f"world-{len(self.built)}"
            template = make_world(folder, enrolled=enrolled, assigned=assigned)
            _check_only_batch_folders_name(folder)
            self.built[kind] = template
        return _copy_world(template, root)


def _copy_world(template: PortalWorld, root: Path) -> PortalWorld:
    """`template`'s files copied into `root`, and the world over them."""
    source = template.ws.root
    shutil.copytree(source, root, symlinks=True, dirs_exist_ok=True)
    # On the library's own connection (a kept DuckDB instance, `core.kept_instance`): the
    # test's and the portal's connections to the copy then attach it to that same instance,
    # where a connection of its own built an instance and closed it (about 30 ms of CPU).
    with audit_connection(root / "audit.duckdb") as con:
        con.execute(
            "UPDATE review_batches SET folder = ? || substr(folder, ?) "
            "WHERE starts_with(folder, ?)",
            [str(root), len(str(source)) + 1, str(source)],
        )
    batches = {
        queue: replace(batch, folder=root / batch.folder.relative_to(source))
        for queue, batch in template.ws.batches.items()
    }
    ws = replace(
        template.ws, root=root, batches=batches, keyring=pooled_keyring(root / "keys"),
        registered=set(template.ws.registered),  # the copy's registry is the template's
    )  # fmt: skip
    world = _portal_over(ws, root)
    world.credentials.update(template.credentials)
    return world


def _check_only_batch_folders_name(root: Path) -> None:
    """Fail when a file of the world at `root`, or a column other than `review_batches.folder`,
    holds `root` (a copy elsewhere would then point at the template)."""
    needle = str(root)
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.name != "audit.duckdb":
                assert needle.encode() not in path.read_bytes(), f"{path} names its folder"
    con = duckdb.connect(str(root / "audit.duckdb"), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = "
            "'main' AND data_type = 'VARCHAR' AND table_name IN (SELECT table_name FROM "
            "information_schema.tables WHERE table_type = 'BASE TABLE')"
        ).fetchall()
        checked = [(t, c) for t, c in columns if (t, c) != ("review_batches", "folder")]
        found = con.execute(
            " UNION ALL ".join(
                f'SELECT \'{t}.{c}\' FROM "{t}" WHERE contains("{c}", $needle)' for t, c in checked
            ),
            {"needle": needle},
        ).fetchall()
        assert not found, f"{found[0][0]} names the world's folder"
    finally:
        con.close()
