"""`cdp profile show <namespace>:<value>`: the profile 360 of whoever holds an identifier.

Read from the serving store (the last published run), like BI tools and the profile API: a
consistent copy that a running job never holds locked. The document is the one the API serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdp.errors import CdpError
from cdp.serving.documents import (
    DOCUMENT_EVENTS,
    lookup_profile_document,
    normalize_identifier,
    recent_events,
)
from cdp.warehouse import connect


class ProfileNotFound(CdpError, LookupError):
    pass


def load_profile(store: Path, namespace: str, value: str, events: int = DOCUMENT_EVENTS) -> dict[str, Any]:
    """The published profile document of the profile holding `namespace:value` (normalized as the
    pipeline stores it), with up to `events` recent events. Raises InvalidIdentifier for a malformed
    identifier and ProfileNotFound when no profile holds it."""
    if not store.is_file():
        raise ProfileNotFound(
            f"no serving store at {store}: run the pipeline (`cdp run`) first, or set CDP_SERVING_STORE"
        )
    value = normalize_identifier(namespace, value)
    with connect(store, read_only=True) as con:
        _, document, namespaces = lookup_profile_document(con, namespace, value)
        if document is None:
            if namespace not in namespaces:
                raise ProfileNotFound(
                    f"unknown identity namespace {namespace!r}; expected one of: {', '.join(sorted(namespaces))}"
                )
            raise ProfileNotFound(f"no profile holds {namespace}:{value} in the last published run")
        profile = json.loads(document)
        if events > DOCUMENT_EVENTS:
            profile["recent_events"] = recent_events(con, profile["profile_id"], events)
        else:
            profile["recent_events"] = profile["recent_events"][:events]
    return profile


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _pairs(title: str, values: dict[str, Any] | None) -> list[str]:
    values = {k: v for k, v in (values or {}).items() if k != "profile_id"}
    if not values:
        return [f"{title}: none"]
    width = max(len(k) for k in values)
    return [f"{title}", *(f"  {k:<{width}}  {_value(v)}" for k, v in values.items())]


def _attributes(values: dict[str, Any] | None, sources: dict[str, dict]) -> list[str]:
    """Attributes with the source record the merge policy took each one from."""
    values = {k: v for k, v in (values or {}).items() if k != "profile_id"}
    width = max((len(k) for k in values), default=0)
    value_width = max((len(_value(v)) for v in values.values()), default=0)
    lines = ["Attributes (value, then the winning source record and merge rule)"]
    for name, value in values.items():
        source = sources.get(name)
        origin = (
            f"{source['record_id']}  {source['merge_rule']}, updated {source['updated_at'] or '-'}" if source else ""
        )
        lines.append(f"  {name:<{width}}  {_value(value):<{value_width}}  {origin}".rstrip())
    return lines


def render_profile(profile: dict[str, Any]) -> str:
    """The profile as terminal text: identities, attributes, consents, traits, predictions, segments,
    recent events."""
    lines = [f"Profile {profile['profile_id']}  (published run {profile.get('published_run_id', '?')})", ""]
    identities = profile.get("identities") or []
    lines.append(f"Identities ({len(identities)})")
    for item in identities:
        lines.append(
            f"  {item['namespace']:<16} {item['value']:<34} first {item['first_seen_at'] or '-':<20} "
            f"last {item['last_seen_at'] or '-':<20} records {item['record_count']:>5}  {item['source_tables']}"
        )
    lines += ["", *_attributes(profile.get("attributes"), profile.get("attribute_sources") or {}), ""]
    consents = profile.get("consents") or []
    lines.append(
        f"Consents ({len(consents)}; only y is consent, unknown never counts)" if consents else "Consents: none"
    )
    lines += [f"  {c['purpose']:<24} {c['value']:<8} {c['decided_at'] or '-'}" for c in consents]
    lines += ["", *_pairs("Traits", profile.get("traits")), "", *_pairs("Predictions", profile.get("predictions")), ""]
    segments = profile.get("segments") or []
    lines.append("Segments: " + (", ".join(segments) if segments else "none"))
    events = profile.get("recent_events") or []
    lines += ["", f"Recent events ({len(events)})"]
    for e in events:
        amount = f"{e['order_total']:,.2f} {e['currency_code'] or ''}" if e.get("order_total") is not None else ""
        lines.append(
            f"  {e['occurred_at']}  {e['event_type']:<34} {e['channel'] or '-':<8} {e['source_table']:<24} {amount}"
        )
    return "\n".join(lines)
