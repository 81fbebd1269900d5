"""An audience definition rendered as a dbt model (SQL) and its properties (YAML).

The SQL follows the project's style: import CTEs, named CTEs, `select * from final`. Every literal
goes through `sql_literal`; every identifier was checked by the definition reader.
"""

from __future__ import annotations

import copy
import datetime as dt

import yaml

from cdp.audiences.definition import (
    SCALAR_OPERATORS,
    AllOf,
    AnyOf,
    AudienceCondition,
    AudienceDefinition,
    Comparison,
    Condition,
    ConsentCondition,
    EventCondition,
    FieldRef,
    Not,
    Var,
)

# The table each public relation is read from, and the CTE that names it in an audience model.
CTE_NAMES = {
    "profiles": "profiles",
    "profile_traits": "traits",
    "profile_predictions": "predictions",
    "profile_events": "events",
    "profile_purchase_items": "purchase_items",
    "profile_consents": "consents",
}
# The audience contract: what every audience model (YAML or SQL) exposes, in this order.
CONTRACT_COLUMNS = {
    "profile_id": {
        "data_type": "varchar",
        "description": "The member's profile (profiles.profile_id); one row per member.",
        "data_tests": ["unique", "not_null"],
    },
    "email": {
        "data_type": "varchar",
        "description": "The member's email (profiles.email); masked in bi.*.",
        "config": {"meta": {"pii": "direct", "masking": "email"}},
    },
    "phone": {
        "data_type": "varchar",
        "description": "The member's phone in E.164 (profiles.phone); masked in bi.*.",
        "config": {"meta": {"pii": "direct", "masking": "phone"}},
    },
    "first_name": {
        "data_type": "varchar",
        "description": "The member's given name (profiles.first_name); an initial in bi.*.",
        "config": {"meta": {"pii": "direct", "masking": "initial"}},
    },
    "last_name": {
        "data_type": "varchar",
        "description": "The member's family name (profiles.last_name); an initial in bi.*.",
        "config": {"meta": {"pii": "direct", "masking": "initial"}},
    },
}
COMPLETED_STATUS = "completed"
PURCHASE_EVENT_TYPE = "commerce.purchases"


def header(definition: AudienceDefinition) -> str:
    return f"generated from audiences/{definition.name}.yml by `cdp segments compile`; do not edit"


def sql_literal(value: object) -> str:
    """A checked scalar as SQL: strings single-quoted with quotes doubled, dates cast, vars from dbt."""
    if isinstance(value, Var):
        return f"{{{{ var('{value.name}') }}}}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"cast('{value.isoformat(sep=' ')}' as timestamp)"
    if isinstance(value, dt.date):
        return f"cast('{value.isoformat()}' as date)"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"not a checked literal: {value!r}")


def _days_ago(days: int | Var) -> str:
    amount = f"-var('{days.name}')" if isinstance(days, Var) else str(-days)
    return f"{{{{ dbt.dateadd('day', {amount}, as_of_timestamp()) }}}}"


def _window(column: str, days: int | Var) -> str:
    return f"{column} >= {_days_ago(days)} and {column} < {{{{ as_of_timestamp() }}}}"


def _column(ref: FieldRef) -> str:
    return f"{CTE_NAMES[ref.table]}.{ref.column}"


def _comparison(comparison: Comparison) -> str:
    column, operator, value = _column(comparison.field), comparison.operator, comparison.value
    if operator in SCALAR_OPERATORS:
        expression = f"{column} {SCALAR_OPERATORS[operator]} {sql_literal(value)}"
    elif operator in ("in", "not_in"):
        items = ", ".join(sql_literal(item) for item in value)  # type: ignore[union-attr]
        expression = f"{column} {'not in' if operator == 'not_in' else 'in'} ({items})"
    elif operator == "between":
        low, high = value  # type: ignore[misc]
        expression = f"{column} between {sql_literal(low)} and {sql_literal(high)}"
    elif operator == "is_null":
        return f"{column} is null"
    elif operator == "is_not_null":
        return f"{column} is not null"
    elif operator == "within_last_days":
        expression = _window(column, value)  # type: ignore[arg-type]
    else:  # older_than_days
        expression = f"{column} < {_days_ago(value)}"  # type: ignore[arg-type]
    # A condition on a missing value is false (so `not` of it is true), never unknown.
    return f"coalesce({expression}, false)"


def _indent(text: str, spaces: int) -> str:
    return text.replace("\n", "\n" + " " * spaces)


def _event(condition: EventCondition) -> str:
    source = CTE_NAMES[condition.table]
    filters = [f"{source}.profile_id = profiles.profile_id"]
    if condition.event_type is not None:
        filters.append(f"{source}.event_type = {sql_literal(condition.event_type)}")
    if condition.table == "profile_purchase_items" or condition.event_type == PURCHASE_EVENT_TYPE:
        filters.append(f"{source}.commerce_order_status = {sql_literal(COMPLETED_STATUS)}")
    if condition.within_last_days is not None:
        filters.append(_window(f"{source}.occurred_at", condition.within_last_days))
    filters += [_comparison(item) for item in condition.filters]
    measure = (
        f"count(distinct {source}.event_id)"
        if condition.measure == "count"
        else f"coalesce(sum({_column(condition.measure_field)}), 0)"
    )  # type: ignore[arg-type]
    where = "\n        and ".join(filters)
    return (
        f"(\n    select {measure}\n    from {source}\n    where {where}\n) "
        f"{SCALAR_OPERATORS[condition.operator]} {sql_literal(condition.value)}"
    )


def render_condition(condition: Condition) -> str:
    if isinstance(condition, Comparison):
        return _comparison(condition)
    if isinstance(condition, AllOf | AnyOf):
        joiner = "\nand " if isinstance(condition, AllOf) else "\nor "
        parts = [render_condition(item) for item in condition.conditions]
        if len(parts) == 1:
            return parts[0]
        return "(\n    " + _indent(joiner.join(parts), 4) + "\n)"
    if isinstance(condition, Not):
        return "not (\n    " + _indent(render_condition(condition.condition), 4) + "\n)"
    if isinstance(condition, EventCondition):
        return _event(condition)
    if isinstance(condition, ConsentCondition):
        filters = [
            "consents.profile_id = profiles.profile_id",
            f"consents.consent_purpose = {sql_literal(condition.purpose)}",
            "consents.consent_value = 'y'",
        ]
        if condition.decided_within_days is not None:
            filters.append(_window("consents.decided_at", condition.decided_within_days))
        return "exists (\n    select 1 from consents\n    where " + "\n        and ".join(filters) + "\n)"
    if isinstance(condition, AudienceCondition):
        return f"profiles.profile_id in (select profile_id from audience_{condition.audience})"
    raise TypeError(condition)


def _walk(condition: Condition):
    yield condition
    if isinstance(condition, AllOf | AnyOf):
        for item in condition.conditions:
            yield from _walk(item)
    elif isinstance(condition, Not):
        yield from _walk(condition.condition)


def field_refs(definition: AudienceDefinition) -> list[FieldRef]:
    """Every column the definition reads, with where it is named (for the column checks)."""
    refs: list[FieldRef] = []
    for condition in _walk(definition.condition):
        if isinstance(condition, Comparison):
            refs.append(condition.field)
        elif isinstance(condition, EventCondition):
            refs += [item.field for item in condition.filters]
            if condition.measure_field is not None:
                refs.append(condition.measure_field)
    if definition.rank:
        refs.append(definition.rank.by)
    refs += [column.field for column in definition.columns]
    return refs


def _tables(definition: AudienceDefinition) -> list[str]:
    tables = {"profiles"} | {ref.table for ref in field_refs(definition)}
    for condition in _walk(definition.condition):
        if isinstance(condition, EventCondition):
            tables.add(condition.table)
        elif isinstance(condition, ConsentCondition):
            tables.add("profile_consents")
    return [table for table in CTE_NAMES if table in tables]


def render_model(definition: AudienceDefinition) -> str:
    tables = _tables(definition)
    checks = sorted({(ref.table, ref.column, ref.path) for ref in field_refs(definition)})
    lines = [f"-- {header(definition)}."]
    if definition.description:
        lines.append(f"-- {definition.description}")
    if checks:
        listed = ",\n    ".join(f"[{sql_literal(t)}, {sql_literal(c)}, {sql_literal(p)}]" for t, c, p in checks)
        lines.append(f"{{{{ audience_require_columns('audiences/{definition.name}.yml', [\n    {listed}\n]) }}}}")
    lines += ["with", ""]
    imports = [f"{CTE_NAMES[table]} as (\n    select * from {{{{ ref('{table}') }}}}\n)," for table in tables]
    imports += [
        f"audience_{name} as (\n    select profile_id from {{{{ ref('seg_{name}') }}}}\n),"
        for name in definition.referenced_audiences
    ]
    lines.append("\n\n".join(imports))
    joins = [
        f"left join {CTE_NAMES[table]}\n        on {CTE_NAMES[table]}.profile_id = profiles.profile_id"
        for table in ("profile_traits", "profile_predictions")
        if table in tables
    ]
    selected = ["{{ audience_columns('profiles') }}"]
    selected += [_column(column.field) for column in definition.columns]
    if definition.rank:
        selected.append(f"{_column(definition.rank.by)} as rank_value")
    where = _indent(render_condition(definition.condition), 8)
    candidates = (
        "candidates as (\n    select\n        "
        + ",\n        ".join(selected)
        + "\n    from profiles\n    "
        + "\n    ".join(joins)
        + ("\n    " if joins else "")
        + f"where\n        {where}\n),"
    )
    lines += ["", candidates]
    output = ["profile_id", "email", "phone", "first_name", "last_name"] + [c.field.column for c in definition.columns]
    current = "candidates"
    if definition.rank:
        order = "desc" if definition.rank.descending else "asc"
        lines += [
            "",
            "ranked as (\n    select\n        *,\n        row_number() over (\n"
            f"            order by rank_value {order} nulls last, profile_id\n        ) as audience_rank\n"
            "    from candidates\n),",
            "",
            f"top_ranked as (\n    select * from ranked\n    where audience_rank <= {definition.rank.limit}\n),",
        ]
        output.append("audience_rank")
        current = "top_ranked"
    final_columns = list(output)
    if definition.splits:
        lines += [
            "",
            f"bucketed as (\n    select\n        *,\n        "
            f"{{{{ audience_split_bucket('profile_id', {sql_literal(definition.name)!r}) }}}} as split_bucket\n"
            f"    from {current}\n),",
        ]
        cases, holdouts, low = [], [], 0
        for split in definition.splits:
            high = low + split.percent
            cases.append(f"when split_bucket < {high} then {sql_literal(split.name)}")
            if split.is_holdout:
                holdouts.append(f"(split_bucket >= {low} and split_bucket < {high})")
            low = high
        final_columns += [
            "case\n            " + "\n            ".join(cases) + "\n        end as split_name",
            f"{' or '.join(holdouts) if holdouts else 'false'} as is_holdout",
        ]
        current = "bucketed"
    lines += [
        "",
        "final as (\n    select\n        " + ",\n        ".join(final_columns) + f"\n    from {current}\n)",
        "",
        "select * from final",
        "",
    ]
    return "\n".join(lines)


def render_properties(
    definition: AudienceDefinition,
    column_types: dict[tuple[str, str], str],
    column_descriptions: dict[tuple[str, str], str] | None = None,
) -> dict:
    """The model's entry in the generated properties file: enforced contract, tests, meta, and every
    column described (an extra column takes the description of the column it copies: a trait's from
    the trait catalogue, _profile_traits.yml)."""
    columns = [{"name": name, **copy.deepcopy(spec)} for name, spec in CONTRACT_COLUMNS.items()]
    descriptions = column_descriptions or {}
    for column in definition.columns:
        key = (column.field.table, column.field.column)
        columns.append(
            {
                "name": column.field.column,
                "data_type": column.data_type or column_types[key],
                "description": descriptions.get(key) or f"{column.field.label} of the member.",
            }
        )
    if definition.rank:
        columns.append(
            {
                "name": "audience_rank",
                "data_type": "bigint",
                "description": f"1 for the highest {definition.rank.by.label} (ties by profile_id).",
            }
        )
    if definition.splits:
        split_names = [split.name for split in definition.splits]
        columns.append(
            {
                "name": "split_name",
                "data_type": "varchar",
                "description": "Deterministic split: bucket md5(profile_id:audience) mod 100.",
                "data_tests": ["not_null", {"accepted_values": {"arguments": {"values": split_names}}}],
            }
        )
        columns.append(
            {
                "name": "is_holdout",
                "data_type": "boolean",
                "description": "True for the holdout group: keep it out of the campaign's syncs.",
            }
        )
    meta = {
        "audience": {"definition": f"audiences/{definition.name}.yml"},
        "serving": {"publish": True, "order_by": ["profile_id"]},
    }
    if definition.splits:
        meta["audience"]["splits"] = [
            {"name": s.name, "percent": s.percent, "holdout": s.is_holdout} for s in definition.splits
        ]
    return {
        "name": definition.model_name,
        "description": definition.description or f"Audience {definition.name}.",
        "config": {"tags": ["audience"], "contract": {"enforced": True}, "meta": meta},
        "columns": columns,
    }


def render_properties_file(models: list[dict]) -> str:
    body = yaml.safe_dump({"version": 2, "models": models}, sort_keys=False, width=120, allow_unicode=True)
    return "# generated from audiences/*.yml by `cdp segments compile`; do not edit.\n" + body
