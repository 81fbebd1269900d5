"""Pre-sync checks: functions the engine calls after the diff and before sending anything. Each gets
the spec (audience, destination, marketing actions, consents) and the plan (counts), and returns None
to let the run go or a reason to block it. The governance issue plugs data-usage policies in here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from activation.diff import SyncPlan
from activation.spec import SyncSpec

PreSyncCheck = Callable[[SyncSpec, SyncPlan], "str | None"]

_REGISTERED: list[PreSyncCheck] = []


def register_pre_sync_check(check: PreSyncCheck) -> PreSyncCheck:
    """Register a check for every sync of this process (usable as a decorator)."""
    _REGISTERED.append(check)
    return check


def registered_checks() -> list[PreSyncCheck]:
    return list(_REGISTERED)


def block_reason(spec: SyncSpec, plan: SyncPlan, checks: Sequence[PreSyncCheck] | None = None) -> str | None:
    """The first reason a check gives to block the run, named after the check; None if all pass."""
    for check in registered_checks() if checks is None else checks:
        reason = check(spec, plan)
        if reason:
            return f"{getattr(check, '__name__', 'pre-sync check')}: {reason}"
    return None
