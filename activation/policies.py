"""Data-usage policies: a marketing action is denied for a label or a label expression.

Policies are YAML files (activation/policies/*.yml, or $CDP_POLICIES_DIR):

    policies:
      - name: no_third_party_export
        description: Third-party data is never exported to third parties.
        deny: [export_to_third_party]
        when: C2 OR custom:third_party

`when` is a label expression: labels (Adobe's C1..C12, I1, I2, S1, S2, or custom:<name>) joined by
AND / OR, with parentheses; AND binds tighter than OR. The expression is evaluated over the union of
the labels of every column a sync uses (the columns the audience is built from and the fields it
exports), so `C3 AND I1` catches pseudonymous data travelling next to a direct identifier even when
no single column carries both. A violation names the policy, the denied action, the label, the
column that carries it and the source contract column(s) the label came from.

The evaluation is a pure function (`evaluate_policies`); `check_sync` gathers a sync's columns and
their labels from the warehouse table governance.column_labels (written by the orchestration from
the contracts' lineage, see cdp/governance/labels.py) and is called by the engine before
anything is sent.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from activation.errors import ActivationError

POLICIES_DIR = Path(__file__).resolve().parent / "policies"
# Adobe Experience Platform's core marketing actions (and the activation engine's sms_targeting and
# call_centre_outreach); custom ones are written custom:<name>.
MARKETING_ACTIONS = (
    "email_targeting",
    "sms_targeting",
    "onsite_advertising",
    "onsite_personalization",
    "cross_site_targeting",
    "export_to_third_party",
    "call_centre_outreach",
    "data_science",
    "combine_with_pii",
    "analytics",
)
CUSTOM_PREFIX = "custom:"
STANDARD_LABELS = tuple(f"C{i}" for i in range(1, 13)) + ("I1", "I2", "S1", "S2")
_LABEL = re.compile(r"^(C([1-9]|1[0-2])|I[12]|S[12]|custom:[A-Za-z0-9_.-]+)$")
_CUSTOM_ACTION = re.compile(r"^custom:[A-Za-z0-9_.-]+$")
_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
POLICY_KEYS = ("name", "description", "deny", "when")
LABELS_TABLE = "governance.column_labels"


class PolicyError(ActivationError):
    """A policy file or a marketing action is not as expected."""


def check_marketing_action(action: str, where: str) -> str:
    if action in MARKETING_ACTIONS or _CUSTOM_ACTION.match(action):
        return action
    raise PolicyError(
        f"{where}: marketing action {action!r} is unknown; expected one of "
        f"{', '.join(MARKETING_ACTIONS)} or custom:<name>. Fix the spelling or declare a custom action."
    )


# ---------------------------------------------------------------- label expressions
@dataclass(frozen=True)
class Label:
    name: str

    def witness(self, labels: frozenset[str]) -> frozenset[str] | None:
        return frozenset({self.name}) if self.name in labels else None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class AllOf:
    parts: tuple

    def witness(self, labels: frozenset[str]) -> frozenset[str] | None:
        found: set[str] = set()
        for part in self.parts:
            got = part.witness(labels)
            if got is None:
                return None
            found |= got
        return frozenset(found)

    def __str__(self) -> str:
        return " AND ".join(f"({p})" if isinstance(p, AnyOf) else str(p) for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple

    def witness(self, labels: frozenset[str]) -> frozenset[str] | None:
        """The labels that make the expression true (all true branches), or None when it is false."""
        found = [got for part in self.parts if (got := part.witness(labels)) is not None]
        return frozenset().union(*found) if found else None

    def __str__(self) -> str:
        return " OR ".join(str(p) for p in self.parts)


def parse_label_expression(text: str, where: str = "label expression"):
    """Parse `C2 OR (C3 AND I1)`. No eval: a small recursive-descent parser over a fixed grammar."""
    if not isinstance(text, str) or not text.strip():
        raise PolicyError(f"{where}: expected a label expression such as 'C2 OR custom:partner', found {text!r}")
    tokens = [t for t in _TOKEN.findall(text)]
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def fail(found: str | None, expected: str) -> PolicyError:
        return PolicyError(
            f"{where}: in {text!r} expected {expected}, found "
            f"{'the end' if found is None else repr(found)}. Labels are C1..C12, I1, I2, S1, S2 or "
            "custom:<name>, joined by AND / OR, with parentheses."
        )

    def expression():
        parts = [term()]
        while peek() is not None and peek().upper() == "OR":
            take()
            parts.append(term())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def term():
        parts = [atom()]
        while peek() is not None and peek().upper() == "AND":
            take()
            parts.append(atom())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def atom():
        token = peek()
        if token == "(":
            take()
            inner = expression()
            if peek() != ")":
                raise fail(peek(), "')'")
            take()
            return inner
        if token is None or token == ")" or token.upper() in ("AND", "OR") or not _LABEL.match(token):
            raise fail(token, "a label")
        return Label(take())

    parsed = expression()
    if peek() is not None:
        raise fail(peek(), "AND, OR or the end")
    return parsed


# ---------------------------------------------------------------- policies
@dataclass(frozen=True)
class Policy:
    name: str
    deny: tuple[str, ...]
    when: object  # a parsed label expression
    description: str = ""
    path: Path | None = None


def load_policy_file(path: Path) -> list[Policy]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise PolicyError(f"policy file {path}: is not valid YAML ({error}). Fix the syntax.") from error
    if not isinstance(document, dict) or not isinstance(document.get("policies"), list):
        raise PolicyError(
            f"policy file {path}: expected a mapping with a list under 'policies', found "
            f"{type(document).__name__}. See activation/policies/default.yml."
        )
    policies = []
    for index, entry in enumerate(document["policies"]):
        where = f"policy file {path}: policies[{index}]"
        if not isinstance(entry, dict):
            raise PolicyError(f"{where}: expected a mapping with keys {', '.join(POLICY_KEYS)}, found {entry!r}")
        where = f"policy file {path}: policies[{index}] ({entry.get('name', 'unnamed')})"
        unknown = sorted(set(entry) - set(POLICY_KEYS))
        missing = [key for key in ("name", "deny", "when") if key not in entry]
        if unknown or missing:
            raise PolicyError(
                f"{where}: "
                + "; ".join(
                    ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
                    + ([f"missing key(s) {', '.join(missing)}"] if missing else [])
                )
                + f". A policy has keys {', '.join(POLICY_KEYS)}."
            )
        deny = entry["deny"] if isinstance(entry["deny"], list) else [entry["deny"]]
        if not deny:
            raise PolicyError(f"{where}.deny: expected at least one marketing action, found none.")
        policies.append(
            Policy(
                name=str(entry["name"]),
                deny=tuple(check_marketing_action(str(a), f"{where}.deny") for a in deny),
                when=parse_label_expression(entry["when"], f"{where}.when"),
                description=str(entry.get("description", "")),
                path=path,
            )
        )
    return policies


def load_policies(directory: str | Path | None = None) -> list[Policy]:
    """Every policy in `directory` (default: $CDP_POLICIES_DIR, else activation/policies/)."""
    directory = Path(directory or os.environ.get("CDP_POLICIES_DIR") or POLICIES_DIR)
    if not directory.is_dir():
        raise PolicyError(f"policy directory {directory} does not exist. Create it or unset CDP_POLICIES_DIR.")
    policies: dict[str, Policy] = {}
    for path in sorted(directory.glob("*.yml")):
        for policy in load_policy_file(path):
            if policy.name in policies:
                raise PolicyError(
                    f"policy file {path}: policy {policy.name!r} is already declared in "
                    f"{policies[policy.name].path}. Give every policy a unique name."
                )
            policies[policy.name] = policy
    return list(policies.values())


# ---------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class ColumnLabels:
    """The labels of one column and, per label, the source contract columns it came from
    (e.g. {"I1": ("crm__contacts.email", "loyalty__members.email")})."""

    labels: frozenset[str] = frozenset()
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    policy: str
    marketing_action: str
    label: str
    column: str  # where the label sits, e.g. "segments.seg_high_value.email (exported as email)"
    sources: tuple[str, ...]  # contract columns the label came from
    expression: str
    subject: str = ""  # the sync or audience checked
    policy_file: str = ""

    def __str__(self) -> str:
        subject = f"{self.subject}: " if self.subject else ""
        return (
            f"{subject}policy {self.policy} ({self.policy_file}) denies {self.marketing_action} for "
            f"{self.expression}; label {self.label} on column {self.column}, from "
            f"{', '.join(self.sources) or 'no recorded source'}"
        )


def evaluate_policies(
    columns: Mapping[str, ColumnLabels],
    marketing_actions: Iterable[str],
    policies: list[Policy] | None = None,
    subject: str = "",
) -> list[Violation]:
    """Every (policy, action, label, column) that forbids using these columns for these actions."""
    policies = load_policies() if policies is None else policies
    actions = list(marketing_actions)
    all_labels = frozenset().union(*(c.labels for c in columns.values())) if columns else frozenset()
    violations = []
    for policy in policies:
        denied = [a for a in actions if a in policy.deny]
        if not denied:
            continue
        witness = policy.when.witness(all_labels)
        if witness is None:
            continue
        for action in denied:
            for label in sorted(witness):
                for column, labels in sorted(columns.items()):
                    if label in labels.labels:
                        violations.append(
                            Violation(
                                policy=policy.name,
                                marketing_action=action,
                                label=label,
                                column=column,
                                sources=tuple(labels.sources.get(label, ())),
                                expression=str(policy.when),
                                subject=subject,
                                policy_file=str(policy.path or ""),
                            )
                        )
    return violations


def _labels_table_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return (
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'governance' and table_name = 'column_labels'"
        ).fetchone()[0]
        > 0
    )


def sync_columns(con: duckdb.DuckDBPyConnection, spec) -> dict[str, ColumnLabels]:
    """The columns a sync uses, with their labels: every field it exports, and every column the
    audience was built from (recorded as `used` rows of governance.column_labels)."""
    if not _labels_table_exists(con):
        return {}
    schema, table = spec.audience.split(".")
    rows = con.execute(
        f"select column_name, usage, labels, sources from {LABELS_TABLE} where model_schema = ? and model = ?",
        [schema, table],
    ).fetchall()
    exported = {column: target for target, column in spec.fields.items()}
    columns: dict[str, ColumnLabels] = {}
    for column_name, usage, labels, sources in rows:
        if usage == "output" and column_name not in exported:
            continue
        where = (
            f"{spec.audience}.{column_name} (exported as {exported[column_name]})"
            if usage == "output"
            else f"{column_name} (used by audience {spec.audience})"
        )
        columns[where] = ColumnLabels(labels=frozenset(labels or ()), sources=json.loads(sources or "{}"))
    return columns


def check_sync(con: duckdb.DuckDBPyConnection, spec, policies: list[Policy] | None = None) -> list[Violation]:
    """The pre-sync gate: violations of the sync's declared marketing actions (none declared: none)."""
    actions = list(getattr(spec, "marketing_actions", ()) or ())
    if not actions:
        return []
    return evaluate_policies(sync_columns(con, spec), actions, policies, subject=f"sync {spec.name}")


def policy_pre_sync_check(con: duckdb.DuckDBPyConnection):
    """The gate as a pre-sync check: a function (spec, plan=None) -> None to let the sync run, or the
    reason to block it (every violation, named). It records the decision in audit.events. The engine
    calls it before sending anything; it has the signature of activation.hooks.PreSyncCheck, so an
    engine with pluggable checks takes it as `checks=[policy_pre_sync_check(con)]`."""
    from activation.audit import record_event

    def data_usage_policies(spec, plan=None) -> str | None:
        violations = check_sync(con, spec)
        record_event(
            con,
            "policy_decision",
            spec.name,
            "denied" if violations else "allowed",
            {
                "marketing_actions": list(getattr(spec, "marketing_actions", ()) or ()),
                "violations": [str(v) for v in violations],
            },
        )
        if not violations:
            return None
        return (
            f"{len(violations)} data-usage policy violation(s):\n  "
            + "\n  ".join(str(v) for v in violations)
            + f"\nRemove the field from the sync, change its marketing_actions in {spec.path}, or relabel the "
            "source column in its contract (`cdp policy check` lists every violation)."
        )

    return data_usage_policies
