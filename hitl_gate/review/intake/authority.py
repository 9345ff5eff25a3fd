"""Who may work a review queue: read from the people registry, never from a typed list.

A queue is worked by a role (`review.yaml` maps roles to queues); a person may work it when the
registry grants them that role in the domain (optionally limited to some queues) and they are
active at the moment the verdict arrives. Assignment says *which* person answers a batch; this
says whether that person (or the reviewer of an escalation) still holds the authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hitl_gate.identity.registry import Registry
from hitl_gate.review.settings import ReviewSettings


@dataclass(frozen=True)
class ReviewAuthority:
    """The registry as of one moment, for one domain and its review settings."""

    registry: Registry
    domain: str
    settings: ReviewSettings | None
    at: datetime

    def roles_of(self, queue: str, queue_role: str | None) -> set[str]:
        """The roles that may work `queue`: its own role and every role listing it."""
        roles = {queue_role} if queue_role else set()
        if self.settings is not None:
            roles |= {role for role, queues in self.settings.roles.items() if queue in queues}
            if queue in self.settings.queues:
                roles.add(self.settings.queues[queue].role)
        return roles

    def may_work(self, person_id: str, queue: str, queue_role: str | None) -> str | None:
        """None if `person_id` may work `queue` now, else why not (in words)."""
        person = self.registry.people.get(person_id)
        if person is None:
            return f"'{person_id}' is not in the people registry"
        if not person.is_active(self.at):
            return f"{person_id} is not an active person of the registry"
        roles = self.roles_of(queue, queue_role)
        if any(person.holds(self.domain, role, queue) for role in roles):
            return None
        wanted = " or ".join(sorted(roles)) or "no role"
        return f"{person_id} does not hold {wanted} in {self.domain} (queue '{queue}')"
