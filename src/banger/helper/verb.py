"""What a helper verb is, and the ledger kinds every verb module checks ownership by."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from banger.helper.validate import Check, Policy

Handler = Callable[[Policy, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Verb:
    name: str
    summary: str
    args: Mapping[str, Check]
    run: Handler
    optional: frozenset[str] = field(default_factory=frozenset)
    # False for read-only verbs, which need not wait behind changes.
    exclusive: bool = True


def table(*verbs: Verb) -> dict[str, Verb]:
    return {v.name: v for v in verbs}


# Ledger kinds: what the helper records having made (see ledger.py).
LINK = "link"
TABLE = "table"


def mine(policy: Policy, kind: str, name: str) -> None:
    policy.ledger.check(kind, name, policy.caller)


# A jailed VMM, recorded for its caller like a link.
VMM = "vmm"
