"""`cdp policy check`: every data-usage policy violation over every sync spec and every audience.

A sync is checked on the columns it uses (the fields it exports and the columns its audience is
built from) against its declared marketing actions, exactly as the engine's pre-sync gate does. An
audience is checked on all its columns (what any future sync could export) against the actions of
the syncs that send it, so a violation shows before someone adds the field to a sync.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import duckdb

import activation
from activation.policies import ColumnLabels, Violation, check_sync, evaluate_policies, load_policies
from cdp.governance.labels import AUDIENCE_SCHEMA, refresh_column_labels


@dataclass
class PolicyReport:
    syncs_checked: list[str] = field(default_factory=list)
    audiences_checked: list[str] = field(default_factory=list)
    undeclared: list[str] = field(default_factory=list)  # syncs with no marketing_actions
    violations: list[Violation] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [str(v) for v in self.violations]
        lines += [
            f"sync {name}: declares no marketing_actions, so no policy can be checked; declare what its "
            "destination does"
            for name in self.undeclared
        ]
        lines.append(
            f"{len(self.violations)} violation(s) over {len(self.syncs_checked)} sync(s) and "
            f"{len(self.audiences_checked)} audience(s)"
        )
        return lines


def audience_columns(con: duckdb.DuckDBPyConnection, audience: str) -> dict[str, ColumnLabels]:
    schema, table = audience.split(".")
    return {
        (name if usage == "used" else f"{audience}.{name}"): ColumnLabels(frozenset(labels or ()), json.loads(sources))
        for name, usage, labels, sources in con.execute(
            "select column_name, usage, labels, sources from governance.column_labels where model_schema = ? and model = ?",
            [schema, table],
        ).fetchall()
    }


def check_all(con: duckdb.DuckDBPyConnection, specs: dict | None = None) -> PolicyReport:
    refresh_column_labels(con)
    policies = load_policies()
    specs = activation.load_sync_specs() if specs is None else specs
    report = PolicyReport()
    actions_by_audience: dict[str, set[str]] = {}
    for name, spec in sorted(specs.items()):
        report.syncs_checked.append(name)
        if not spec.marketing_actions:
            report.undeclared.append(name)
        actions_by_audience.setdefault(spec.audience, set()).update(spec.marketing_actions)
        report.violations += check_sync(con, spec, policies)
    # Audiences only: segments also holds segment_memberships, its history and sizes, which are no audience.
    from cdp.audiences import list_audiences

    audience_models = {audience.model for audience in list_audiences()}
    audiences = [
        f"{AUDIENCE_SCHEMA}.{t}"
        for (t,) in con.execute(
            "select distinct model from governance.column_labels where model_schema = ? order by 1", [AUDIENCE_SCHEMA]
        ).fetchall()
        if t in audience_models
    ]
    for audience in audiences:
        report.audiences_checked.append(audience)
        actions = sorted(actions_by_audience.get(audience, ()))
        if actions:
            report.violations += evaluate_policies(
                audience_columns(con, audience), actions, policies, subject=f"audience {audience}"
            )
    return report
