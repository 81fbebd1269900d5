"""The audience compiler, fast: errors name the file, the path and what is allowed; hostile values
stay literals (checked on a small DuckDB warehouse); generated files are not stale."""

from __future__ import annotations

import datetime as dt
import hashlib
import textwrap
from pathlib import Path

import duckdb
import jinja2
import polars as pl
import pytest

from cdp.audiences import AudienceDefinitionError, AudienceProject, parse_definition, stale_files
from cdp.audiences.project import check_against_catalog, compile_audiences, consent_purposes
from cdp.audiences.render import render_model

AS_OF_END = dt.datetime(2026, 7, 1)
PURPOSES = consent_purposes()


def definition(text: str, file: str = "audiences/test.yml"):
    return parse_definition(textwrap.dedent(text), file, PURPOSES)


def test_generated_files_are_not_stale():
    assert stale_files() == [], "run `cdp segments compile` and commit the generated files"


def test_consent_purposes_come_from_the_contract():
    assert {"marketing_email", "marketing_sms"} <= set(PURPOSES)


# -- errors ---------------------------------------------------------------------------------------

ERRORS = [
    ("name: test\nconditions: []\n", "conditions", "a non-empty list of conditions"),
    ("name: test\nconditons: [{field: profile.is_known, op: eq, value: true}]\n", "conditons", "conditions"),
    ("name: other\nconditions: [{field: profile.is_known, op: eq, value: true}]\n", "name", "'test'"),
    (
        "name: test\nconditions: [{field: profile.is_known, op: equals, value: true}]\n",
        "conditions[0].op",
        "within_last_days",
    ),
    (
        "name: test\nconditions:\n  - any:\n      - {field: profile.gender, op: eq, value: F}\n"
        "      - all: [{field: person.age, op: gt, value: 3}]\n",
        "conditions[0].any[1].all[0].field",
        "traits.<column>",
    ),
    (
        "name: test\nconditions: [{field: traits.lifetime_revenue, op: gte, value: [1, 2]}]\n",
        "conditions[0].value",
        "a string, number, boolean, date",
    ),
    (
        "name: test\nconditions: [{field: profile.gender, op: in, value: []}]\n",
        "conditions[0].value",
        "a list of 1 to 1000 values",
    ),
    ("name: test\nconditions: [{field: profile.gender, op: eq}]\n", "conditions[0]", "eq with a value"),
    ("name: test\nconditions: [{consent: marketing_fax}]\n", "conditions[0].consent", "marketing_email"),
    (
        "name: test\nconditions: [{field: profile.gender, op: eq, value: F, consent: marketing_sms}]\n",
        "conditions[0]",
        "exactly one of",
    ),
    (
        "name: test\nconditions: [{event: {type: 'x; drop', within_last_days: 3}}]\n",
        "conditions[0].event.type",
        "XDM event type",
    ),
    (
        "name: test\nconditions: [{event: {type: commerce.purchases, count: {op: gte, value: many}}}]\n",
        "conditions[0].event.count.value",
        "a number",
    ),
    (
        "name: test\nconditions: [{purchased_item: {where: [{field: 'colour; --', op: eq, value: red}]}}]\n",
        "conditions[0].purchased_item.where[0].field",
        "a column name",
    ),
    (
        "name: test\nconditions: [{field: traits.last_purchase_at, op: within_last_days, value: -1}]\n",
        "conditions[0].value",
        "a whole number of days",
    ),
    (
        "name: test\nconditions: [{field: profile.is_known, op: eq, value: true}]\n"
        "splits: [{name: a, percent: 50}, {name: b, percent: 40}]\n",
        "splits",
        "adding up to 100",
    ),
    (
        "name: test\nconditions: [{field: profile.is_known, op: eq, value: true}]\nrank: {by: traits.x, limit: 0}\n",
        "rank.limit",
        "at least 1",
    ),
    (
        "name: test\nconditions: [{field: profile.gender, op: eq, value: '{{ run_query(\"drop table x\") }}'}]\n",
        "conditions[0].value",
        "template markers",
    ),
    (
        "name: test\nconditions: [{field: profile.is_known, op: eq, value: {var: 'x y'}}]\n",
        "conditions[0].value.var",
        "a dbt var name",
    ),
    (
        "name: test\nconditions: [{field: profile.is_known, op: eq, value: true}]\ncolumns: [profile.email]\n",
        "columns[0].field",
        "other than the audience columns",
    ),
    ("name: test\nconditions: [{field: profile.gender op: eq}]\n", "line 2", "a YAML mapping"),
]


@pytest.mark.parametrize(("text", "path", "allowed"), ERRORS, ids=[e[1] + ":" + e[2][:20] for e in ERRORS])
def test_invalid_definitions_fail_with_file_path_and_what_is_allowed(text, path, allowed):
    with pytest.raises(AudienceDefinitionError) as caught:
        parse_definition(text, "audiences/test.yml", PURPOSES)
    error = caught.value
    assert error.file == "audiences/test.yml" and error.path.startswith(path), str(error)
    assert allowed in error.allowed, str(error)
    assert str(error).startswith(f"audiences/test.yml: {error.path}: ")


def write_project(tmp_path: Path, audiences: dict[str, str]) -> AudienceProject:
    project = AudienceProject(tmp_path / "dbt_project")
    (project.definitions_dir).mkdir(parents=True)
    (project.dbt_project_dir / "models" / "segments").mkdir(parents=True)
    (project.dbt_project_dir / "models" / "segments" / "seg_hand_written.sql").write_text("select 1")
    for name, text in audiences.items():
        (project.definitions_dir / f"{name}.yml").write_text(textwrap.dedent(text))
    return project


def test_unknown_and_circular_audience_references_fail(tmp_path):
    project = write_project(tmp_path / "a", {"a": "name: a\nconditions: [{in_audience: nobody}]\n"})
    with pytest.raises(
        AudienceDefinitionError,
        match=r"audiences/a.yml: conditions: in_audience 'nobody' is no "
        r"audience; allowed: a, hand_written",
    ):
        compile_audiences(project)
    project = write_project(
        tmp_path / "b",
        {"a": "name: a\nconditions: [{in_audience: b}]\n", "b": "name: b\nconditions: [{not: {in_audience: a}}]\n"},
    )
    with pytest.raises(AudienceDefinitionError, match="a -> b -> a"):
        compile_audiences(project)
    project = write_project(tmp_path / "c", {"hand_written": "name: hand_written\nconditions: [{in_audience: x}]\n"})
    with pytest.raises(AudienceDefinitionError, match="also the SQL audience"):
        compile_audiences(project)


def test_output_columns_need_a_type(tmp_path):
    project = write_project(
        tmp_path,
        {
            "a": "name: a\nconditions: [{field: profile.is_known, op: eq, value: true}]\n"
            "columns: [traits.undocumented_trait]\n"
        },
    )
    with pytest.raises(AudienceDefinitionError, match=r"columns\[0\]: the type of traits.undocumented_trait"):
        compile_audiences(project)


def test_fields_are_checked_against_the_warehouse_catalog():
    catalog = {
        "profiles": {"profile_id": "VARCHAR", "gender": "VARCHAR", "is_known": "BOOLEAN"},
        "profile_traits": {"profile_id": "VARCHAR", "lifetime_revenue": "DECIMAL(18,2)"},
    }
    unknown = definition("""
        name: test
        conditions:
          - {field: profile.is_known, op: eq, value: true}
          - any: [{field: traits.rfm_grup, op: eq, value: champions}]
    """)
    with pytest.raises(AudienceDefinitionError) as caught:
        check_against_catalog(unknown, catalog)
    assert caught.value.path == "conditions[1].any[0].field"
    assert "traits.lifetime_revenue" in caught.value.allowed
    wrong_type = definition("name: test\nconditions: [{field: profile.gender, op: gt, value: F}]\n")
    with pytest.raises(AudienceDefinitionError, match="gt on profile.gender"):
        check_against_catalog(wrong_type, catalog)
    text_for_a_number = definition(
        "name: test\nconditions: [{field: traits.lifetime_revenue, op: in, value: [1, 'x']}]\n"
    )
    with pytest.raises(AudienceDefinitionError, match=r"text compared with traits.lifetime_revenue \(DECIMAL"):
        check_against_catalog(text_for_a_number, catalog)


# -- rendered SQL on a small warehouse ----------------------------------------------------------------


def render(sql: str) -> str:
    """The generated model rendered like dbt would, with the project's macros stubbed in plain SQL."""

    class Dbt:
        @staticmethod
        def dateadd(part: str, amount: int, expression: str) -> str:
            return f"({expression} + interval ({amount}) {part})"

    context = {
        "ref": lambda name: f"segments.{name}" if name.startswith("seg_") else f"profiles.{name}",
        "var": {"high_value_min_revenue": 1000, "lapsed_after_days": 90}.__getitem__,
        "as_of_timestamp": lambda: f"timestamp '{AS_OF_END}'",
        "dbt": Dbt,
        "audience_columns": lambda rel: ", ".join(
            f"{rel}.{c}" for c in ("profile_id", "email", "phone", "first_name", "last_name")
        ),
        "audience_require_columns": lambda *args: "",
        "audience_split_bucket": lambda key, salt: (
            f"cast(('0x' || substr(md5({key} || ':' || {salt}), 1, 8)) as bigint) % 100"
        ),
    }
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(sql).render(**context)


HOSTILE = [
    "x' or 1=1 --",
    '"; drop table profiles.profiles; --',
    "'); drop table profiles.profile_traits; --",
    "a\\' or 'a'='a",
    "red'||(select string_agg(email, ',') from profiles.profiles)||'",
]


@pytest.fixture(scope="module")
def warehouse():
    con = duckdb.connect()
    con.execute("create schema profiles; create schema segments")
    con.execute("""create table profiles.profiles (profile_id varchar, is_known boolean, gender varchar, email varchar,
                   phone varchar, first_name varchar, last_name varchar)""")
    con.execute("create table profiles.profile_traits (profile_id varchar, lifetime_revenue decimal(18, 2))")
    con.execute("""create table profiles.profile_purchase_items (event_id varchar, profile_id varchar,
                   occurred_at timestamp, commerce_order_status varchar, product_category varchar,
                   product_colour varchar, price_total decimal(18, 2))""")
    con.execute("""create table profiles.profile_events (event_id varchar, profile_id varchar, event_type varchar,
                   occurred_at timestamp, commerce_order_status varchar)""")
    con.execute("""create table profiles.profile_consents (profile_id varchar, consent_purpose varchar,
                   consent_value varchar, decided_at timestamp)""")
    people = [(f"p{i}", i % 5 != 0, ["F", "M", None][i % 3], f"p{i}@example.com") for i in range(200)]
    people += [(f"evil{i}", True, value, f"evil{i}@example.com") for i, value in enumerate(HOSTILE)]

    def insert(table: str, rows: list[tuple]) -> None:  # one statement per table (executemany is slow)
        frame = pl.DataFrame(rows, orient="row")
        con.register("frame", frame)
        con.execute(f"insert into profiles.{table} select * from frame")
        con.unregister("frame")

    insert("profiles", [(*person, None, None, None) for person in people])
    insert("profile_traits", [(p[0], i * 10) for i, p in enumerate(people)])
    items = [
        (
            f"o{i}",
            f"p{i}",
            AS_OF_END - dt.timedelta(days=i % 30, hours=1),
            "completed" if i % 7 else "cancelled",
            "dresses",
            ["red", "blue"][i % 2],
            10,
        )
        for i in range(200)
    ]
    items += [
        (f"oe{i}", f"evil{i}", AS_OF_END - dt.timedelta(days=1), "completed", "dresses", value, 10)
        for i, value in enumerate(HOSTILE)
    ]
    insert("profile_purchase_items", items)
    insert(
        "profile_events",
        [
            (f"v{i}-{j}", f"p{i}", "commerce.productViews", AS_OF_END - dt.timedelta(days=j * 10 + 1), None)
            for i in range(200)
            for j in range(i % 4)
        ],
    )
    insert(
        "profile_consents",
        [(f"p{i}", "marketing_email", "y" if i % 2 else "n", AS_OF_END - dt.timedelta(days=i)) for i in range(200)],
    )
    yield con
    con.close()


def members(con, audience) -> set[str]:
    return {row[0] for row in con.execute(render(render_model(audience))).fetchall()}


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_literals(warehouse, value):
    quoted = value.replace("'", "''")  # YAML single quotes: only the quote is doubled
    by_field = definition(f"""
        name: test
        description: "a description\\n; drop table profiles.profiles; --"
        conditions:
          - {{field: profile.gender, op: eq, value: '{quoted}'}}
    """)
    sql = render_model(by_field)
    assert not any(line.lstrip().startswith("; drop") for line in sql.splitlines())
    assert members(warehouse, by_field) == {f"evil{HOSTILE.index(value)}"}
    in_list = definition(f"""
        name: test
        conditions:
          - not: {{field: profile.gender, op: in, value: ['{quoted}', F, M]}}
    """)
    assert members(warehouse, in_list) == {f"p{i}" for i in range(200) if i % 3 == 2} | {
        f"evil{i}" for i, other in enumerate(HOSTILE) if other != value
    }
    by_item = definition(f"""
        name: test
        conditions:
          - purchased_item: {{where: [{{field: product_colour, op: eq, value: '{quoted}'}}], within_last_days: 7}}
    """)
    assert members(warehouse, by_item) == {f"evil{HOSTILE.index(value)}"}
    tables = warehouse.execute("select count(*) from information_schema.tables where table_schema = 'profiles'")
    assert tables.fetchone()[0] == 5
    assert warehouse.execute("select count(*) from profiles.profiles").fetchone()[0] == 200 + len(HOSTILE)


def test_conditions_windows_and_nulls(warehouse):
    audience = definition("""
        name: test
        conditions:
          - {field: profile.is_known, op: eq, value: true}
          - not: {field: profile.gender, op: eq, value: M}
          - any:
              - purchased_item:
                  where: [{field: product_colour, op: eq, value: red}]
                  within_last_days: 14
              - event: {type: commerce.productViews, within_last_days: 25, count: {op: gte, value: 2}}
          - {consent: marketing_email, decided_within_days: 100}
    """)
    expected = set()
    for i in range(200):
        red_recent = i % 2 == 0 and i % 30 < 14 and i % 7 != 0
        views = sum(1 for j in range(i % 4) if j * 10 + 1 <= 25)
        if i % 5 != 0 and i % 3 != 1 and (red_recent or views >= 2) and i % 2 == 1 and i < 100:
            expected.add(f"p{i}")
    assert members(warehouse, audience) == expected


def test_rank_and_splits(warehouse):
    audience = definition(
        """
        name: test_split
        conditions: [{field: profile.is_known, op: eq, value: true}]
        rank: {by: traits.lifetime_revenue, order: desc, limit: 50}
        splits:
          - {name: campaign, percent: 80}
          - {name: holdout, percent: 20, holdout: true}
    """,
        file="audiences/test_split.yml",
    )
    rows = warehouse.execute(render(render_model(audience))).pl()
    known = warehouse.execute(
        "select p.profile_id, t.lifetime_revenue from profiles.profiles p join "
        "profiles.profile_traits t using (profile_id) where p.is_known "
        "order by 2 desc, 1 limit 50"
    ).fetchall()
    assert rows.sort("audience_rank")["profile_id"].to_list() == [row[0] for row in known]
    for row in rows.iter_rows(named=True):
        bucket = int(hashlib.md5(f"{row['profile_id']}:test_split".encode()).hexdigest()[:8], 16) % 100
        assert row["split_name"] == ("campaign" if bucket < 80 else "holdout")
        assert row["is_holdout"] == (bucket >= 80)
