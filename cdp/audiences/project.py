"""Compile every audience of the dbt project: YAML definitions in dbt_project/audiences/ become dbt
models in models/segments/audiences/, and the list of all audiences (YAML and SQL) becomes the
macro `audience_models`, from which segment_memberships, its history and the sizes collect members.

Files are rewritten only when their content changes (dbt's manifest and partial parsing stay warm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from cdp.audiences.definition import (
    FIELD_NAMESPACES,
    AudienceDefinition,
    FieldRef,
    parse_definition,
)
from cdp.audiences.errors import AudienceDefinitionError, AudienceError
from cdp.audiences.render import (
    field_refs,
    header,
    render_model,
    render_properties,
    render_properties_file,
)
from cdp.settings import DBT_PROJECT_DIR, PROJECT_ROOT
from cdp.warehouse import WarehouseError, open_warehouse

GENERATED_MARKER = "by `cdp segments compile`; do not edit"
PROPERTIES_FILE = "_audiences__models.yml"
PUBLIC_TABLES = (
    "profiles",
    "profile_traits",
    "profile_predictions",
    "profile_events",
    "profile_purchase_items",
    "profile_consents",
)
NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")
TIME_TYPES = ("DATE", "TIMESTAMP")


@dataclass(frozen=True)
class AudienceProject:
    dbt_project_dir: Path = DBT_PROJECT_DIR

    @property
    def definitions_dir(self) -> Path:
        return self.dbt_project_dir / "audiences"

    @property
    def generated_dir(self) -> Path:
        return self.dbt_project_dir / "models" / "segments" / "audiences"

    @property
    def audience_list_macro(self) -> Path:
        return self.dbt_project_dir / "macros" / "audience_models.sql"

    def sql_audiences(self) -> dict[str, Path]:
        """Hand-written audiences: every seg_<name>.sql under models/segments that was not generated."""
        found = {}
        for path in sorted((self.dbt_project_dir / "models" / "segments").rglob("seg_*.sql")):
            if self.generated_dir not in path.parents:
                found[path.stem.removeprefix("seg_")] = path
        return found


@dataclass(frozen=True)
class Audience:
    """One audience as the insight commands see it."""

    name: str
    model: str
    kind: str  # yaml | sql
    source: Path
    has_splits: bool


def consent_purposes() -> tuple[str, ...]:
    """The consent purposes the preference-centre contract allows (the whitelist of `consent:`)."""
    contract = yaml.safe_load((PROJECT_ROOT / "data_contracts" / "contracts" / "preferences__consents.yml").read_text())
    return tuple(contract["columns"]["purpose"]["allowed_values"])


def documented_column_descriptions(project: AudienceProject) -> dict[tuple[str, str], str]:
    """description of every documented column of the profile models (the trait catalogue's included)."""
    descriptions: dict[tuple[str, str], str] = {}
    for path in (project.dbt_project_dir / "models" / "profiles").glob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            for column in model.get("columns", []) or []:
                if column.get("description"):
                    descriptions[(model["name"], column["name"])] = " ".join(str(column["description"]).split())
    return descriptions


def documented_column_types(project: AudienceProject) -> dict[tuple[str, str], str]:
    """data_type of every documented column of the profile models (enforced contracts document them)."""
    types: dict[tuple[str, str], str] = {}
    for path in (project.dbt_project_dir / "models" / "profiles").glob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            for column in model.get("columns", []) or []:
                if column.get("data_type"):
                    types[(model["name"], column["name"])] = column["data_type"]
    return types


def warehouse_catalog(warehouse: Path | None) -> dict[str, dict[str, str]] | None:
    """Columns and types of the public profile tables, when a built warehouse can be read now."""
    if warehouse is None or not warehouse.exists():
        return None
    try:
        with open_warehouse(warehouse, read_only=True) as con:
            rows = con.execute(
                f"select table_name, column_name, data_type from information_schema.columns "
                f"where table_schema = 'profiles' and table_name in {PUBLIC_TABLES}"
            ).fetchall()
    except (
        duckdb.Error,
        WarehouseError,
    ):  # locked by a running pipeline, or not a warehouse: the build-time check remains
        return None
    catalog: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        catalog.setdefault(table, {})[column] = data_type.upper()
    return catalog if set(catalog) >= {"profiles", "profile_traits"} else None


def check_against_catalog(definition: AudienceDefinition, catalog: dict[str, dict[str, str]]) -> None:
    from cdp.audiences.definition import AllOf, AnyOf, Comparison, EventCondition, Not

    def fail(ref: FieldRef, found: str, allowed: str) -> AudienceDefinitionError:
        return AudienceDefinitionError(definition.file, ref.path, found, allowed)

    for ref in field_refs(definition):
        if ref.table not in catalog:
            continue
        if ref.column not in catalog[ref.table]:
            namespace = {v: k for k, v in FIELD_NAMESPACES.items()}.get(ref.table)
            prefix = f"{namespace}." if namespace else ""
            raise fail(
                ref,
                f"{ref.label!r} is not a column of {ref.table}",
                ", ".join(prefix + column for column in catalog[ref.table] if column != "profile_id"),
            )

    def data_type(ref: FieldRef) -> str:
        return catalog.get(ref.table, {}).get(ref.column, "")

    def walk(condition):
        if isinstance(condition, AllOf | AnyOf):
            for item in condition.conditions:
                walk(item)
        elif isinstance(condition, Not):
            walk(condition.condition)
        elif isinstance(condition, EventCondition):
            for item in condition.filters:
                walk(item)
            if (
                condition.measure_field is not None
                and data_type(condition.measure_field)
                and not data_type(condition.measure_field).startswith(NUMERIC_TYPES)
            ):
                raise fail(
                    condition.measure_field,
                    f"sum over {condition.measure_field.label} ({data_type(condition.measure_field)})",
                    "a numeric column",
                )
        elif isinstance(condition, Comparison):
            kind = data_type(condition.field)
            if not kind:
                return
            if condition.operator in ("within_last_days", "older_than_days") and not kind.startswith(TIME_TYPES):
                raise fail(
                    condition.field,
                    f"{condition.operator} on {condition.field.label} ({kind})",
                    "a date or timestamp field",
                )
            values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
            if kind.startswith(NUMERIC_TYPES) and any(isinstance(value, str) for value in values):
                raise fail(
                    condition.field,
                    f"text compared with {condition.field.label} ({kind})",
                    "numbers (or {var: <name>})",
                )
            if condition.operator in ("lt", "lte", "gt", "gte", "between") and not kind.startswith(
                NUMERIC_TYPES + TIME_TYPES
            ):
                raise fail(
                    condition.field,
                    f"{condition.operator} on {condition.field.label} ({kind})",
                    "a numeric, date or timestamp field (use eq, ne, in, not_in for text)",
                )

    walk(definition.condition)
    if (
        definition.rank
        and data_type(definition.rank.by)
        and not data_type(definition.rank.by).startswith(NUMERIC_TYPES + TIME_TYPES)
    ):
        raise fail(
            definition.rank.by,
            f"rank by {definition.rank.by.label} ({data_type(definition.rank.by)})",
            "a numeric, date or timestamp field",
        )


def load_definitions(
    project: AudienceProject = AudienceProject(), broken: dict[str, AudienceDefinitionError] | None = None
) -> list[AudienceDefinition]:
    """Every valid definition. An invalid one raises, or, when `broken` is given, is recorded there
    (by file stem, the audience's name) and left out, so one bad file breaks only its own audience."""
    purposes = consent_purposes()
    definitions = []
    for path in sorted(project.definitions_dir.glob("*.y*ml")):
        try:
            definitions.append(parse_definition(path.read_text(encoding="utf-8"), f"audiences/{path.name}", purposes))
        except AudienceDefinitionError as error:
            if broken is None:
                raise
            broken[path.stem] = error
    return definitions


def _check_references(
    definitions: list[AudienceDefinition],
    sql_audiences: dict[str, Path],
    broken: dict[str, AudienceDefinitionError] | None = None,
) -> list[AudienceDefinition]:
    """The definitions whose names and `in_audience` references hold. A bad one raises, or, when
    `broken` is given, is recorded there, and so is every audience that includes a broken one."""
    by_name = {d.name: d for d in definitions}

    def problem(definition: AudienceDefinition) -> AudienceDefinitionError | None:
        if definition.name in sql_audiences:
            return AudienceDefinitionError(
                definition.file,
                "name",
                f"{definition.name!r} is also the SQL audience {sql_audiences[definition.name].name}",
                "a name no other audience has",
            )
        known = sorted(set(by_name) | set(sql_audiences))
        for name in definition.referenced_audiences:
            if broken is not None and name in broken:
                return AudienceDefinitionError(
                    definition.file,
                    "conditions",
                    f"in_audience {name!r} is an audience whose definition is invalid ({broken[name]})",
                    "a valid audience",
                    f"Fix audiences/{name}.yml first.",
                )
            if name not in known:
                return AudienceDefinitionError(
                    definition.file, "conditions", f"in_audience {name!r} is no audience", ", ".join(known)
                )
        return None

    def cycle_of(name: str, trail: tuple[str, ...]) -> AudienceDefinitionError | None:
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name) :], name))
            return AudienceDefinitionError(
                by_name[trail[0]].file,
                "conditions",
                f"audiences include each other: {cycle}",
                "audiences that do not depend on themselves",
            )
        for referenced in by_name[name].referenced_audiences if name in by_name else ():
            found = cycle_of(referenced, (*trail, name))
            if found:
                return found
        return None

    valid = list(definitions)
    while True:  # an audience that includes a broken one is broken too, transitively
        for definition in valid:
            error = problem(definition) or cycle_of(definition.name, ())
            if error is not None:
                break
        else:
            return valid
        if broken is None:
            raise error
        broken[definition.name] = error
        valid = [d for d in valid if d.name != definition.name]
        by_name.pop(definition.name, None)


def column_problems(
    project: AudienceProject = AudienceProject(),
    warehouse: Path | None = None,
    catalog: dict[str, dict[str, str]] | None = None,
) -> list[AudienceDefinitionError]:
    """Fields that the built warehouse lacks, or whose type does not fit the operator. Reported, not
    raised, by `cdp segments compile`: a column that a model adds appears only after the next build
    (where the generated model's `audience_require_columns` fails for real if it is still missing)."""
    catalog = catalog if catalog is not None else warehouse_catalog(warehouse)
    if not catalog:
        return []
    problems = []
    for definition in load_definitions(project, broken={}):
        try:
            check_against_catalog(definition, catalog)
        except AudienceDefinitionError as error:
            problems.append(error)
    return problems


def compile_audiences(
    project: AudienceProject = AudienceProject(), broken: dict[str, AudienceDefinitionError] | None = None
) -> dict[Path, str]:
    """Every generated file and its content. Raises AudienceDefinitionError for an invalid definition,
    unless `broken` is given: then invalid ones are recorded there and compiled to nothing."""
    definitions = load_definitions(project, broken)
    sql_audiences = project.sql_audiences()
    definitions = _check_references(definitions, sql_audiences, broken)
    column_types = documented_column_types(project)
    for definition in list(definitions):
        for index, column in enumerate(definition.columns):
            key = (column.field.table, column.field.column)
            if column.data_type is None and key not in column_types:
                error = AudienceDefinitionError(
                    definition.file,
                    f"columns[{index}]",
                    f"the type of {column.field.label} is not documented",
                    "a column with a data_type in models/profiles/*.yml, or {field: ..., data_type: ...}",
                    "The audience model has an enforced contract, so every output column needs a type.",
                )
                if broken is None:
                    raise error
                broken[definition.name] = error
                definitions.remove(definition)
                break
    if broken:  # audiences that include one found broken just now
        definitions = _check_references(definitions, sql_audiences, broken)
    files: dict[Path, str] = {}
    for definition in definitions:
        files[project.generated_dir / f"{definition.model_name}.sql"] = render_model(definition)
    descriptions = documented_column_descriptions(project)  # once: it parses every profile model's YAML
    files[project.generated_dir / PROPERTIES_FILE] = render_properties_file(
        [render_properties(definition, column_types, descriptions) for definition in definitions]
    )
    files[project.audience_list_macro] = _audience_list_macro(definitions, sql_audiences)
    return files


def _audience_list_macro(definitions: list[AudienceDefinition], sql_audiences: dict[str, Path]) -> str:
    entries = [(d.name, bool(d.splits)) for d in definitions] + [(name, False) for name in sql_audiences]
    listed = "\n".join(
        f"        {{'name': '{name}', 'model': 'seg_{name}', 'has_splits': {str(splits).lower()}}},"
        for name, splits in sorted(entries)
    )
    return (
        f"{{#- generated from audiences/*.yml and models/segments/**/seg_*.sql {GENERATED_MARKER}.\n"
        "    Every audience: segment_memberships, segment_membership_history and segment_sizes collect them. -#}\n"
        "{% macro audience_models() -%}\n    {{ return([\n" + listed + "\n    ]) }}\n{%- endmacro %}\n"
    )


def stale_files(project: AudienceProject = AudienceProject()) -> list[Path]:
    """Generated files that differ from what the definitions compile to (or should not exist)."""
    files = compile_audiences(project)
    stale = [
        path for path, content in files.items() if not path.exists() or path.read_text(encoding="utf-8") != content
    ]
    stale += [path for path in _generated_on_disk(project) if path not in files]
    return stale


def _generated_on_disk(project: AudienceProject) -> list[Path]:
    if not project.generated_dir.exists():
        return []
    return [
        path
        for path in project.generated_dir.iterdir()
        if path.is_file() and GENERATED_MARKER in path.read_text(encoding="utf-8")[:300]
    ]


def write_audiences(
    project: AudienceProject = AudienceProject(), broken: dict[str, AudienceDefinitionError] | None = None
) -> list[Path]:
    """Compile and write; remove models of deleted definitions. Returns the files changed. With
    `broken`, invalid definitions are recorded there and get no model (every other audience builds)."""
    files = compile_audiences(project, broken)
    changed = []
    for path, content in files.items():
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    for path in _generated_on_disk(project):
        if path not in files:
            path.unlink()
            changed.append(path)
    return changed


def list_audiences(project: AudienceProject = AudienceProject()) -> list[Audience]:
    audiences = [
        Audience(d.name, d.model_name, "yaml", project.definitions_dir / Path(d.file).name, bool(d.splits))
        for d in load_definitions(project, broken={})  # an invalid definition is listed by `cdp segments compile`
    ]
    audiences += [Audience(name, f"seg_{name}", "sql", path, False) for name, path in project.sql_audiences().items()]
    return sorted(audiences, key=lambda a: a.name)


def broken_audiences(project: AudienceProject = AudienceProject()) -> dict[str, AudienceDefinitionError]:
    """Audience name (file stem) -> why its definition is invalid; empty when every one compiles."""
    broken: dict[str, AudienceDefinitionError] = {}
    compile_audiences(project, broken)
    return broken


__all__ = [
    "AudienceError",
    "broken_audiences",
    "AudienceProject",
    "column_problems",
    "compile_audiences",
    "list_audiences",
    "stale_files",
    "write_audiences",
    "header",
]
