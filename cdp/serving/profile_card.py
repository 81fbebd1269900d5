"""`cdp profile show <namespace>:<value>`: the profile 360 of whoever holds an identifier.

Read from the serving store (the last published run), like BI tools and the profile API: a
consistent copy that a running job never holds locked. The document is the one the API serves.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

from cdp.errors import CdpError
from cdp.serving.documents import DOCUMENT_EVENTS, normalize_identifier, recent_events
from cdp.serving.store import PublishedStore, StoreUnavailable


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
    store_ = PublishedStore(store, pool_size=1, threads=1)
    try:
        with store_.session() as (con, read_model):
            found = read_model.find(namespace, value)
            if found is None:
                if namespace not in read_model.namespaces:
                    raise ProfileNotFound(
                        f"unknown identity namespace {namespace!r}; expected one of: "
                        f"{', '.join(sorted(read_model.namespaces))}"
                    )
                raise ProfileNotFound(f"no profile holds {namespace}:{value} in the last published run")
            profile = json.loads(found.document)
            if events > DOCUMENT_EVENTS:
                profile["recent_events"] = recent_events(con, profile["profile_id"], events)
            else:
                profile["recent_events"] = profile["recent_events"][:events]
    except StoreUnavailable as error:
        raise ProfileNotFound(str(error)) from error
    finally:
        store_.close()
    return profile


def _factors(value: Any) -> str | None:
    """Top factors of a propensity score as words: "recency_days 12 (raises), orders_90d 0 (lowers)"."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, list) or not all(isinstance(item, dict) and "feature" in item for item in value):
        return None
    words = {"up": "raises", "down": "lowers"}
    parts = []
    for item in value:
        shown = item.get("value")
        shown = f"{shown:,.4g}" if isinstance(shown, float) else ("" if shown is None else str(shown))
        direction = words.get(item.get("direction"), item.get("direction"))
        parts.append(f"{item['feature']} {shown}".strip() + (f" ({direction})" if direction else ""))
    return ", ".join(parts) or "-"


def _value(value: Any, name: str = "") -> str:
    if value is None:
        return "-"
    if "top_factors" in name:
        words = _factors(value)
        if words is not None:
            return words
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _fit(first: str, rest: str, width: int, indent: int) -> list[str]:
    """`first` then `rest`, wrapped to `width` at spaces only (a timestamp or an identifier is never
    cut), continuation lines indented under the value column."""
    line = f"{first}  {rest}".rstrip() if rest else first.rstrip()
    if len(line) <= width:
        return [line]
    wrapped = textwrap.wrap(
        rest,
        width=max(width - indent, 20),
        break_long_words=False,
        break_on_hyphens=False,
    )
    if len(first) + 2 + len(wrapped[0]) <= width:
        return [f"{first}  {wrapped[0]}", *(" " * indent + part for part in wrapped[1:])]
    return [first.rstrip(), *(" " * indent + part for part in wrapped)]


def _pairs(title: str, values: dict[str, Any] | None, width: int) -> list[str]:
    values = {k: v for k, v in (values or {}).items() if k != "profile_id"}
    if not values:
        return [f"{title}: none"]
    name_width = max(len(k) for k in values)
    lines = [title]
    for name, value in values.items():
        lines += _fit(f"  {name:<{name_width}}", _value(value, name), width, name_width + 4)
    return lines


def _attributes(values: dict[str, Any] | None, sources: dict[str, dict], width: int) -> list[str]:
    """Attributes with the source record the merge policy took each one from."""
    values = {k: v for k, v in (values or {}).items() if k != "profile_id"}
    name_width = max((len(k) for k in values), default=0)
    value_width = min(max((len(_value(v)) for v in values.values()), default=0), 36)
    lines = ["Attributes (value; the source record the merge policy took it from, the rule, its update time)"]
    for name, value in values.items():
        source = sources.get(name)
        origin = f"{source['record_id']}  {source['merge_rule']}  {source['updated_at'] or '-'}" if source else ""
        lines += _fit(f"  {name:<{name_width}}  {_value(value):<{value_width}}", origin, width, name_width + 6)
    return lines


def render_profile(profile: dict[str, Any], width: int | None = None) -> str:
    """The profile as terminal text, each line within `width` (default: the terminal's, else 120):
    identities, attributes, consents, traits, predictions, segments, recent events."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    lines = [f"Profile {profile['profile_id']}  (published run {profile.get('published_run_id', '?')})", ""]
    identities = profile.get("identities") or []
    lines.append(f"Identities ({len(identities)})")
    value_width = min(max((len(str(item["value"])) for item in identities), default=0), 34)
    for item in identities:
        seen = f"{item['first_seen_at'] or '-'} .. {item['last_seen_at'] or '-'}"
        records = f"{item['record_count']:,} record{'s' if item['record_count'] != 1 else ''}"
        lines += _fit(
            f"  {item['namespace']:<16} {item['value']!s:<{value_width}}", f"{records:>11}  {seen}", width, 19
        )
        if item.get("source_tables"):
            lines += _fit(" " * 18, "from " + str(item["source_tables"]).replace(",", ", "), width, 19)
    lines += ["", *_attributes(profile.get("attributes"), profile.get("attribute_sources") or {}, width), ""]
    consents = profile.get("consents") or []
    lines.append(
        f"Consents ({len(consents)}; only y is consent, unknown never counts)" if consents else "Consents: none"
    )
    lines += [f"  {c['purpose']:<24} {c['value']:<8} {c['decided_at'] or '-'}" for c in consents]
    lines += [
        "",
        *_pairs("Traits", profile.get("traits"), width),
        "",
        *_pairs("Predictions", profile.get("predictions"), width),
        "",
    ]
    segments = profile.get("segments") or []
    lines += _fit("Segments:", ", ".join(segments) if segments else "none", width, 4)
    events = profile.get("recent_events") or []
    lines += ["", f"Recent events ({len(events)})"]
    for e in events:
        amount = f"{e['order_total']:,.2f} {e['currency_code'] or ''}" if e.get("order_total") is not None else ""
        lines += _fit(
            f"  {e['occurred_at']}  {e['event_type']:<34}",
            f"{e['channel'] or '-':<8} {e['source_table'] or '-':<24} {amount}".rstrip(),
            width,
            24,
        )
    return "\n".join(lines)
