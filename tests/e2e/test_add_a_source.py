"""README "Add a source" and "Add a trait", followed as a user would in their own clone (a copy of the
project): a product-reviews CSV source (an email, a phone, a numeric rating, a review time) is added
with its contract and its staging folder only, and a trait (average rating) with one column entry.
`cdp run` must carry the reviews to profile_events with their rating, give the reviewer's profile the
review's identifiers, and compute the trait as the file says."""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from support.pipeline_runs import AS_OF_END
from support.workspace import PROJECT_ROOT, Workspace

PROJECT_PARTS = ("cdp", "activation", "data_contracts", "orchestration", "dbt_project", "tools", "workspace.yaml")
IGNORED = shutil.ignore_patterns("target", "logs", "__pycache__", "*.duckdb", "*.wal")

# README step 1: the contract.
CONTRACT = """\
source: reviews
table: reviews
description: Product reviews from the review widget, one row per review.
format: csv
owner: cx-team
party: first
primary_key: [review_id]
event_time: reviewed_at
records: immutable
max_reject_rate: 0.2
columns:
  review_id: {type: string, required: true}
  email: {type: string, format: email, pii: direct, labels: [I1]}
  phone: {type: string, pii: direct, labels: [I1]}
  rating: {type: integer, required: true, min: 1, max: 5}
  title: {type: string}
  reviewed_at: {type: timestamp, required: true}
"""

# README step 3: the staging folder (sources YAML, the view, the model YAML with its cdp meta).
SOURCES_YAML = """\
version: 2

sources:
  - name: reviews
    schema: raw
    tables:
      - name: reviews
        identifier: reviews__reviews
"""

STAGING_SQL = """\
with

source as (
    select * from {{ source('reviews', 'reviews') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
    where country_code = '{{ var("default_phone_country") }}'
),

deduplicated as (
    {{ deduplicate('source', 'review_id', '_loaded_at, _source_file, _row_number') }}
),

renamed as (
    select
        deduplicated.review_id,
        {{ normalize_email('deduplicated.email') }} as email,
        {{ normalize_phone('deduplicated.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        deduplicated.rating,
        nullif(trim(deduplicated.title), '') as review_title,
        deduplicated.reviewed_at
    from deduplicated
    cross join calling_codes
)

select * from renamed
"""

MODELS_YAML = """\
version: 2

models:
  - name: stg_reviews__reviews
    description: Product reviews with normalized email and phone.
    config:
      meta:
        cdp:
          record_key: review_id
          updated_at: reviewed_at
          identifiers:
            - {column: email, namespace: email, primary: true}
            - {column: phone, namespace: phone}
          event:
            type: product.reviewed
            occurred_at: reviewed_at
            channel: reviews
            measures: [rating]
    columns:
      - name: review_id
        data_tests: [unique, not_null]
      - name: email
      - name: phone
      - name: rating
      - name: review_title
        config: {meta: {source_column: title}}
      - name: reviewed_at
"""

# README "Add a trait": one column entry in models/profiles/_profile_traits.yml.
TRAIT_COLUMN = """\
      - name: average_review_rating
        data_type: double
        description: Mean rating of the profile's product reviews.
        config: {meta: {trait: {aggregate: avg, measure: rating, where: {event_type: product.reviewed}}}}
"""

EMAIL = re.compile(r"^[a-z0-9._%+'-]+@[a-z0-9.-]+\.[a-z]{2,}$")


def copy_project(root: Path) -> Path:
    for part in PROJECT_PARTS:
        source = PROJECT_ROOT / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=IGNORED)
        else:
            shutil.copy(source, root / part)
    return root


def add_reviews_source(project: Path) -> None:
    (project / "data_contracts" / "contracts" / "reviews__reviews.yml").write_text(CONTRACT)
    folder = project / "dbt_project" / "models" / "staging" / "reviews"
    folder.mkdir()
    (folder / "_reviews__sources.yml").write_text(SOURCES_YAML)
    (folder / "stg_reviews__reviews.sql").write_text(STAGING_SQL)
    (folder / "_reviews__models.yml").write_text(MODELS_YAML)


def add_average_rating_trait(project: Path) -> None:
    path = project / "dbt_project" / "models" / "profiles" / "_profile_traits.yml"
    text = path.read_text()
    anchor = "      - name: rfm_group\n"
    assert text.count(anchor) == 1
    path.write_text(text.replace(anchor, TRAIT_COLUMN + anchor))


def reviewers(data_dir: Path, count: int) -> list[dict[str, str]]:
    """CRM contacts with a well-formed email that no other contact or junk list shares."""
    rows = []
    for path in sorted((data_dir / "landing" / "crm" / "contacts").glob("*.csv")):
        with path.open() as file:
            rows += list(csv.DictReader(file))
    junk = {row["value"] for row in csv.DictReader((data_dir / "truth" / "junk_identifiers.csv").open())}
    emails = pl.DataFrame({"contact_id": [r["contact_id"] for r in rows], "email": [r["email"] for r in rows]})
    emails = emails.with_columns(pl.col("email").str.strip_chars().str.to_lowercase())
    per_email = emails.unique().group_by("email").agg(pl.col("contact_id").n_unique().alias("contacts"))
    usable = set(per_email.filter(pl.col("contacts") == 1)["email"])
    picked, seen = [], set()
    for contact_id, email in emails.unique(maintain_order=True).iter_rows():
        if email in usable and email not in junk and EMAIL.match(email) and contact_id not in seen:
            picked.append({"contact_id": contact_id, "email": email})
            seen.add(contact_id)
    assert len(picked) >= count
    return picked[:count]


def write_reviews(data_dir: Path, people: list[dict[str, str]]) -> pl.DataFrame:
    """Reviews by known contacts (messy spelling of their email, a phone no other source has), one by an
    unknown email, one after the as-of instant and one with an out-of-range rating. Returns the file."""
    day = AS_OF_END - dt.timedelta(days=1)
    rows = []
    for index, person in enumerate(people):
        for number in range(1 + index % 3):
            rows.append(
                {
                    "review_id": f"RV{index:03d}{number}",
                    "email": f"  {person['email'].upper()} " if number == 0 else person["email"],
                    "phone": f"+1 555 01{index:02d} {number}99" if number == 0 else "",
                    "rating": str(1 + (index * 7 + number * 3) % 5),
                    "title": f"review {index}.{number}",
                    "reviewed_at": (day - dt.timedelta(days=index + 10 * number)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
    rows.append(
        dict(
            review_id="RVNEW",
            email="first.time@reviews.example",
            phone="",
            rating="4",
            title="",
            reviewed_at=day.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    )
    rows.append(
        dict(
            review_id="RVLATE",
            email=people[0]["email"],
            phone="",
            rating="5",
            title="from tomorrow",
            reviewed_at=(AS_OF_END + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    )
    rows.append(
        dict(
            review_id="RVBAD",
            email=people[1]["email"],
            phone="",
            rating="9",
            title="",
            reviewed_at=day.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    )
    landing = data_dir / "landing" / "reviews" / "reviews"
    landing.mkdir(parents=True)
    with (landing / "reviews_2026-06-30.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def reviews_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("add_a_source")
    project = copy_project(root / "clone")
    workspace = Workspace(root / "data", project_root=project)
    workspace.cdp("generate", "--people", "1000", "--seed", "3", "--as-of", "2026-06-30")
    people = reviewers(workspace.data_dir, 12)
    reviews = write_reviews(workspace.data_dir, people)
    add_reviews_source(project)
    add_average_rating_trait(project)
    checked = workspace.cdp("sources", "check").stdout
    workspace.cdp("run")
    return workspace, project, people, reviews, checked


def query(workspace: Workspace, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        return con.execute(sql).pl()


def test_the_source_needs_no_edit_outside_its_contract_and_staging_folder(reviews_run):
    workspace, project, _, _, checked = reviews_run
    assert "stg_reviews__reviews" in checked and "measures rating" in checked
    # The XDM models' generated dependencies now list the new model: no one edited them.
    generated = (project / "dbt_project" / "macros" / "xdm_source_models.sql").read_text()
    assert "stg_reviews__reviews" in generated
    assert query(workspace, "select count(*) as n from staging.stg_reviews__reviews")["n"][0] > 0
    quarantined = query(workspace, "select review_id, _rule from quarantine.reviews__reviews")
    assert quarantined.rows() == [("RVBAD", "out_of_range")]


def test_review_events_reach_profile_events_with_their_rating(reviews_run):
    workspace, _, _, reviews, _ = reviews_run
    accepted = reviews.filter(pl.col("review_id") != "RVBAD")
    events = query(
        workspace,
        """
        select event_id, event_type, channel, occurred_at, source_table,
               cast(json_extract_string(event_measures, '$.rating') as double) as rating
        from profiles.profile_events where source_table = 'reviews__reviews'
        """,
    )
    assert events.height == accepted.height
    expected = {f"reviews__reviews:{r}": float(v) for r, v in accepted.select("review_id", "rating").iter_rows()}
    assert dict(events.select("event_id", "rating").iter_rows()) == expected
    assert set(events["event_type"]) == {"product.reviewed"} and set(events["channel"]) == {"reviews"}
    # The other sources' events carry no measures.
    others = query(
        workspace,
        "select count(*) as n from profiles.profile_events where event_measures is not null "
        "and source_table <> 'reviews__reviews'",
    )
    assert others["n"][0] == 0


def test_the_reviewers_profile_gets_the_reviews_identifiers(reviews_run):
    workspace, _, people, reviews, _ = reviews_run
    identities = query(workspace, "select profile_id, namespace, identity_value from profiles.profile_identities")
    by_crm = {v: p for p, ns, v in identities.iter_rows() if ns == "crm_id"}
    held = {(p, ns, v) for p, ns, v in identities.iter_rows()}
    for index, person in enumerate(people):
        profile = by_crm[person["contact_id"]]
        phone = "+1555" + f"01{index:02d}" + "099"
        assert (profile, "phone", phone) in held, (person, phone)  # only the review knew this phone
        assert (profile, "email", person["email"]) in held
    newcomer = [p for p, ns, v in identities.iter_rows() if (ns, v) == ("email", "first.time@reviews.example")]
    assert len(newcomer) == 1


def test_the_average_rating_trait_equals_the_file(reviews_run):
    workspace, _, people, reviews, _ = reviews_run
    identities = query(workspace, "select profile_id, namespace, identity_value from profiles.profile_identities")
    profile_of_email = {v: p for p, ns, v in identities.iter_rows() if ns == "email"}
    counted = reviews.filter(
        (pl.col("review_id") != "RVBAD") & (pl.col("reviewed_at").str.to_datetime("%Y-%m-%dT%H:%M:%SZ") < AS_OF_END)
    ).with_columns(email=pl.col("email").str.strip_chars().str.to_lowercase(), rating=pl.col("rating").cast(pl.Float64))
    expected = (
        counted.with_columns(profile_id=pl.col("email").replace_strict(profile_of_email))
        .group_by("profile_id")
        .agg(expected=pl.col("rating").mean())
    )
    traits = query(workspace, "select profile_id, average_review_rating from profiles.profile_traits")
    joined = traits.join(expected, on="profile_id", how="left")
    assert joined.filter(pl.col("expected").is_not_null()).height == expected.height > len(people) // 2
    mismatched = joined.filter(
        (pl.col("expected").is_null() != pl.col("average_review_rating").is_null())
        | ((pl.col("expected") - pl.col("average_review_rating")).abs() > 1e-9)
    )
    assert mismatched.height == 0, mismatched
    # The first reviewer's late review (after the as-of instant, rating 5) did not count: only RV0000 (1).
    first = traits.filter(pl.col("profile_id") == profile_of_email[people[0]["email"]])
    assert first["average_review_rating"].to_list() == [1.0]
