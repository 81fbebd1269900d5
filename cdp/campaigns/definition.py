"""Campaigns as data: dbt_project/campaigns/<name>.yml ties an audience with splits to the syncs that
send it, a start and an end, and a goal declared like a trait. Loaded and checked here (every failure
names the file, the key, what was found and what to write), then rendered into the generated macro
macros/campaign_catalogue.sql that the analytics models read (like the trait catalogue: dbt unit tests
compile without the project's graph, and every `cdp` command refreshes it before dbt parses)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdp.audiences.definition import Split  # a campaign reads its audience's splits as they are
from cdp.errors import CdpError
from cdp.settings import DBT_PROJECT_DIR

CAMPAIGNS_DIR = DBT_PROJECT_DIR / "campaigns"
CATALOGUE_MACRO = Path("macros") / "campaign_catalogue.sql"
PROFILE_EVENTS_YAML = Path("models") / "profiles" / "_profiles__models.yml"
KEYS = ("name", "description", "audience", "syncs", "starts_at", "ends_at", "goal")
GOAL_KEYS = ("description", "aggregate", "of", "measure", "where", "window_days")
AGGREGATES = ("count", "sum")
# `of: revenue` is a purchase's amount in the reporting currency (dbt var reporting_currency): the converted
# column of profile_events, named by macro campaign_revenue.
REVENUE = "revenue"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
MAX_WINDOW_DAYS = 365


class CampaignError(CdpError):
    """A campaign definition is wrong; the message names the file, the key and what to write."""


@dataclass(frozen=True)
class Goal:
    description: str
    aggregate: str  # count | sum
    window_days: int
    where: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # profile_events column -> accepted values
    of: str | None = None  # a numeric column of profile_events, or `revenue`
    measure: str | None = None  # a numeric event measure (event_measures)


@dataclass(frozen=True)
class Campaign:
    name: str
    file: Path
    description: str
    audience: str
    syncs: tuple[str, ...]
    goal: Goal
    splits: tuple[Split, ...]
    starts_at: dt.date | None = None  # exposures from this day on (UTC); None: from the first
    ends_at: dt.date | None = None  # exposures until the end of this day; None: still running

    @property
    def audience_model(self) -> str:
        return f"seg_{self.audience}"


def campaigns_dir() -> Path:
    """Where the definitions live: CDP_CAMPAIGNS_DIR if set, else dbt_project/campaigns/."""
    return Path(os.environ["CDP_CAMPAIGNS_DIR"]) if os.environ.get("CDP_CAMPAIGNS_DIR") else CAMPAIGNS_DIR


def _fail(path: Path, where: str, found: str, expected: str) -> CampaignError:
    return CampaignError(f"campaign {path}: {where}: found {found}; expected {expected}.")


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def profile_event_columns(dbt_dir: Path = DBT_PROJECT_DIR) -> dict[str, str]:
    """The columns of profiles.profile_events (its enforced contract), name -> data type."""
    document = yaml.safe_load((dbt_dir / PROFILE_EVENTS_YAML).read_text(encoding="utf-8")) or {}
    model = next(m for m in document["models"] if m["name"] == "profile_events")
    return {column["name"]: str(column.get("data_type", "")).lower() for column in model["columns"]}


def _date(path: Path, data: dict, key: str) -> dt.date | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = dt.date.fromisoformat(value)
    if not isinstance(value, dt.date):
        raise _fail(path, key, _show(value), "a date, YYYY-MM-DD (UTC)")
    return value


def _goal(path: Path, value: Any, columns: dict[str, str]) -> Goal:
    if not isinstance(value, dict):
        raise _fail(
            path,
            "goal",
            _show(value),
            "a mapping such as {aggregate: count, where: {event_type: ...}, window_days: 14}",
        )
    unknown = sorted(set(value) - set(GOAL_KEYS))
    if unknown:
        raise _fail(path, "goal", f"unknown key(s) {', '.join(unknown)}", f"only {', '.join(GOAL_KEYS)}")
    aggregate = value.get("aggregate", "count")
    if aggregate not in AGGREGATES:
        raise _fail(path, "goal.aggregate", _show(aggregate), f"one of {', '.join(AGGREGATES)}")
    window = value.get("window_days")
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW_DAYS:
        raise _fail(
            path,
            "goal.window_days",
            _show(window),
            f"a whole number of days 1..{MAX_WINDOW_DAYS}: conversions count within it after a member's first exposure",
        )
    of, measure = value.get("of"), value.get("measure")
    if aggregate == "count" and (of is not None or measure is not None):
        raise _fail(path, "goal", "`of`/`measure` with aggregate count", "aggregate: sum to add up a value")
    if aggregate == "sum":
        if (of is None) == (measure is None):
            raise _fail(
                path,
                "goal",
                "aggregate sum with " + ("both `of` and `measure`" if of is not None else "neither `of` nor `measure`"),
                f"one of them: `of: {REVENUE}` (revenue in the reporting currency), `of: <numeric column of "
                "profile_events>` or `measure: <event measure>`",
            )
        numeric = [name for name, kind in columns.items() if kind.startswith(("decimal", "double", "bigint", "int"))]
        if of is not None and of != REVENUE and of not in numeric:
            raise _fail(
                path, "goal.of", _show(of), f"{REVENUE} or a numeric column of profile_events ({', '.join(numeric)})"
            )
        if measure is not None and (not isinstance(measure, str) or not COLUMN.match(measure)):
            raise _fail(path, "goal.measure", _show(measure), "the lower-case name of a numeric event measure")
    where = value.get("where") or {}
    if not isinstance(where, dict) or not where:
        raise _fail(
            path,
            "goal.where",
            _show(where),
            "a mapping of profile_events columns to values, e.g. {event_type: commerce.purchases}",
        )
    conditions: dict[str, tuple[Any, ...]] = {}
    for column, accepted in where.items():
        if column not in columns:
            raise _fail(
                path, f"goal.where.{column}", "an unknown column", f"a column of profile_events ({', '.join(columns)})"
            )
        values = tuple(accepted) if isinstance(accepted, list) else (accepted,)
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise _fail(
                path, f"goal.where.{column}", _show(accepted), "a value or a list of values (text, numbers, booleans)"
            )
        conditions[column] = values
    description = str(value.get("description") or "").strip()
    return Goal(description, aggregate, window, conditions, of, measure)


def load_campaign(
    path: Path, audiences: dict[str, tuple[Split, ...] | None], syncs: dict | None, columns: dict[str, str]
) -> Campaign:
    """One definition, checked against the audiences (name -> splits, None for SQL audiences) and the
    sync specs (name -> SyncSpec; None: the syncs are not checked)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CampaignError(f"campaign {path}: not valid YAML ({error}). Fix the syntax.") from None
    if not isinstance(data, dict):
        raise _fail(path, "the file", type(data).__name__, f"a mapping with keys {', '.join(KEYS)}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise _fail(path, "top level", f"unknown key(s) {', '.join(unknown)}", f"only {', '.join(KEYS)}")
    missing = [key for key in ("name", "audience", "syncs", "goal") if key not in data]
    if missing:
        raise _fail(
            path,
            "top level",
            f"no {', '.join(missing)}",
            "name, audience, syncs and goal (starts_at, ends_at optional)",
        )
    name = data["name"]
    if name != path.stem or not isinstance(name, str) or not NAME.match(name):
        raise _fail(path, "name", _show(name), f"'{path.stem}' (the file name: lower-case letters, digits, _)")
    audience = data["audience"]
    if audience not in audiences:
        raise _fail(
            path, "audience", _show(audience), f"one of the project's audiences ({', '.join(sorted(audiences))})"
        )
    splits = audiences[audience]
    if not splits or not any(s.is_holdout for s in splits) or all(s.is_holdout for s in splits):
        raise _fail(
            path,
            "audience",
            f"{audience}, which has no holdout split to compare with"
            if not splits or not any(s.is_holdout for s in splits)
            else f"{audience}, whose splits are all holdouts",
            "a YAML audience with splits, one of them `holdout: true` (dbt_project/audiences/<name>.yml)",
        )
    sync_names = data["syncs"]
    if isinstance(sync_names, str):
        sync_names = [sync_names]
    if not isinstance(sync_names, list) or not sync_names:
        raise _fail(path, "syncs", _show(data["syncs"]), "a list of the sync names that send the audience")
    if not all(isinstance(sync_name, str) and sync_name for sync_name in sync_names):
        raise _fail(path, "syncs", _show(data["syncs"]), "a list of the sync names that send the audience")
    for sync_name in sync_names if syncs is not None else []:
        spec = syncs.get(sync_name)
        if spec is None:
            raise _fail(
                path, "syncs", f"unknown sync {_show(sync_name)}", f"one of {', '.join(sorted(syncs)) or '(no syncs)'}"
            )
        if spec.audience != f"segments.seg_{audience}":
            raise _fail(
                path,
                "syncs",
                f"sync {sync_name}, which sends {spec.audience}",
                f"syncs of segments.seg_{audience}: a member's exposure is the run that first sent them",
            )
        if spec.primary_key != "profile_id":
            raise _fail(
                path,
                "syncs",
                f"sync {sync_name} keyed by {spec.primary_key}",
                "syncs keyed by profile_id (primary_key: profile_id), so sends join the member's profile",
            )
        if spec.send_holdout:
            raise _fail(
                path,
                "syncs",
                f"sync {sync_name} with send_holdout: true, which sends the holdout too",
                "syncs that keep the holdout out (remove send_holdout), or there is nothing to compare with",
            )
    starts_at, ends_at = _date(path, data, "starts_at"), _date(path, data, "ends_at")
    if starts_at and ends_at and ends_at < starts_at:
        raise _fail(path, "ends_at", f"{ends_at}, before starts_at {starts_at}", "an end on or after the start")
    return Campaign(
        name=name,
        file=path,
        description=" ".join(str(data.get("description") or "").split()),
        audience=audience,
        syncs=tuple(sync_names),
        goal=_goal(path, data["goal"], columns),
        splits=splits,
        starts_at=starts_at,
        ends_at=ends_at,
    )


def _project_audiences() -> dict[str, tuple[Split, ...] | None]:
    from cdp.audiences.project import AudienceProject, load_definitions

    project = AudienceProject()
    # A broken audience is reported by itself (it fails its own asset); a campaign of it names an unknown audience.
    audiences: dict[str, tuple[Split, ...] | None] = {d.name: d.splits for d in load_definitions(project, broken={})}
    audiences.update({name: None for name in project.sql_audiences()})
    return audiences


def load_campaigns(
    directory: Path | None = None, broken: dict[str, CampaignError] | None = None, check_syncs: bool = True
) -> list[Campaign]:
    """Every campaign of the project, checked, in name order. A wrong one raises CampaignError, unless
    `broken` is given: then it is recorded there (file stem -> error) and left out, and every other one
    loads. Without `check_syncs` the sync specs are not read (the generated catalogue must not depend on
    CDP_SYNCS_DIR: the analytics models only need the sync names)."""
    directory = directory or campaigns_dir()
    paths = sorted(directory.glob("*.yml")) if directory.exists() else []
    if not paths:
        return []
    syncs = _valid_sync_specs() if check_syncs else None
    audiences, columns = _project_audiences(), profile_event_columns()
    campaigns = []
    for path in paths:
        try:
            campaigns.append(load_campaign(path, audiences, syncs, columns))
        except CampaignError as error:
            if broken is None:
                raise
            broken[path.stem] = error
    return campaigns


def _valid_sync_specs() -> dict:
    """The sync specs that load; a broken spec is reported by itself, and a campaign naming it is unknown."""
    from cdp.definitions import load_sync_specs

    specs, _broken = load_sync_specs()
    return specs


def catalogue_entries(campaigns: list[Campaign]) -> list[dict]:
    return [
        {
            "name": c.name,
            "description": c.description,
            "audience": c.audience,
            "syncs": list(c.syncs),
            "starts_at": c.starts_at.isoformat() if c.starts_at else None,
            "ends_at": c.ends_at.isoformat() if c.ends_at else None,
            "goal": {
                "description": c.goal.description,
                "aggregate": c.goal.aggregate,
                "of": c.goal.of,
                "measure": c.goal.measure,
                "where": {column: list(values) for column, values in c.goal.where.items()},
                "window_days": c.goal.window_days,
            },
            "splits": [{"name": s.name, "percent": s.percent, "holdout": s.is_holdout} for s in c.splits],
        }
        for c in campaigns
    ]


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def render_campaign_catalogue(campaigns: list[Campaign]) -> str:
    body = yaml.dump(catalogue_entries(campaigns), Dumper=_PlainDumper, sort_keys=False, width=110, allow_unicode=True)
    return (
        "{#- GENERATED by cdp/campaigns/definition.py from dbt_project/campaigns/*.yml: do not edit.\n"
        "    Every `cdp` command rewrites it before dbt parses; the analytics models read it. -#}\n"
        "{% macro campaign_catalogue() -%}\n"
        "{%- set catalogue -%}\n"
        f"{body}"
        "{%- endset -%}\n"
        "{{ return(fromyaml(catalogue) or []) }}\n"
        "{%- endmacro %}\n"
    )


def write_campaign_catalogue(dbt_dir: Path = DBT_PROJECT_DIR) -> bool:
    """Rewrite macros/campaign_catalogue.sql when the campaigns changed it; True if written."""
    path = dbt_dir / CATALOGUE_MACRO
    # A wrong campaign fails only itself: left out here, named by `cdp run` and `cdp campaigns list`.
    text = render_campaign_catalogue(load_campaigns(broken={}, check_syncs=False))
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True
