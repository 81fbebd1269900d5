"""Duplicates are not collisions: planted person records (not the demo generator's) where a CRM contact
was entered twice with no shared identifier, next to hard negatives (household members sharing a phone,
address and surname; twins; namesakes). The matcher trains itself (no labels, no deterministic links),
the household rules keep look-alikes apart, and the linking rules merge duplicate records but never
two people through a shared device."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random

import polars as pl
import pytest

from support.workspace import PROJECT_ROOT

MODELS = PROJECT_ROOT / "dbt_project" / "models" / "identity"
NAME_VARIANTS = pl.read_csv(PROJECT_ROOT / "dbt_project" / "seeds" / "identity_name_variants.csv")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, MODELS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


matching = _load("identity_probabilistic_links")
link_decisions = _load("identity_link_decisions")

FIRST = [
    "anna",
    "robert",
    "maria",
    "james",
    "lena",
    "peter",
    "sofia",
    "tomas",
    "ines",
    "oskar",
    "greta",
    "hugo",
    "clara",
    "felix",
    "nora",
    "jonas",
    "elena",
    "marco",
    "julia",
    "david",
    "emil",
    "hanna",
    "ivan",
    "lucia",
]
LAST = [
    "becker",
    "novak",
    "garcia",
    "kowalski",
    "silva",
    "jensen",
    "rossi",
    "dubois",
    "meyer",
    "larsen",
    "costa",
    "horvat",
    "fischer",
    "moreau",
    "bianchi",
    "nielsen",
    "santos",
    "weber",
    "petrov",
    "lindqvist",
]
STREETS = ["main street", "oak avenue", "river road", "station road", "hill lane", "market square", "park way"]
CITIES = [("lisbon", "1100"), ("porto", "4000"), ("lyon", "6900"), ("turin", "1010"), ("aarhus", "8000")]


def _typo(rng: random.Random, value: str) -> str:
    i = rng.randrange(1, len(value) - 1)
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :] if rng.random() < 0.5 else value[:i] + value[i + 1 :]


def _person(rng: random.Random, number: int) -> dict:
    city, prefix = rng.choice(CITIES)
    return {
        "first_name": rng.choice(FIRST),
        "last_name": rng.choice(LAST),
        "birth_date": (dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(25000))).isoformat(),
        "street": f"{rng.randint(1, 400)} {rng.choice(STREETS)}",
        "postcode": f"{prefix}{rng.randint(10, 99)}",
        "city": city,
        "email": f"person{number}@mail.example",
        "phone": f"+35191{number:07d}",
    }


def _duplicate(rng: random.Random, person: dict) -> dict:
    """A second entry with one or two modifications and no identifier of the first."""
    copy = {**person, "email": None, "phone": None}
    for change in rng.sample(
        ["first", "last", "date", "address", "swap", "missing_date", "nickname"], rng.randint(1, 2)
    ):
        if change == "first":
            copy["first_name"] = _typo(rng, copy["first_name"])
        elif change == "last":
            copy["last_name"] = _typo(rng, copy["last_name"])
        elif change == "date" and copy["birth_date"]:
            year, month, day = copy["birth_date"].split("-")
            copy["birth_date"] = (
                f"{year}-{day}-{month}" if int(day) <= 12 else f"{year[:3]}{(int(year[3]) + 3) % 10}-{month}-{day}"
            )
        elif change == "address":
            copy["street"], copy["postcode"] = None, None
        elif change == "swap":
            copy["first_name"], copy["last_name"] = copy["last_name"], copy["first_name"]
        elif change == "missing_date":
            copy["birth_date"] = None
        elif change == "nickname" and copy["first_name"] == "robert":
            copy["first_name"] = "bob"
    return copy


def planted(seed: int = 3, people: int = 600):
    """CRM records: every person once, one in four entered again (no shared identifier); hard
    negatives: 30 households (a second person with the same surname, address and phone), 10 twins (same
    birth date too), 15 namesakes (same first and last name elsewhere). Returns records, truth pairs,
    hard-negative pairs."""
    rng = random.Random(seed)
    persons = [_person(rng, p) for p in range(people)]
    hard_negatives = []
    for k in range(55):
        a, b = 2 * k, 2 * k + 1
        if k < 40:  # households (the last ten are twins)
            persons[b].update(
                last_name=persons[a]["last_name"],
                street=persons[a]["street"],
                postcode=persons[a]["postcode"],
                city=persons[a]["city"],
                phone=persons[a]["phone"],
            )
            while persons[b]["first_name"] == persons[a]["first_name"]:
                persons[b]["first_name"] = rng.choice(FIRST)
            if k >= 30:
                persons[b]["birth_date"] = persons[a]["birth_date"]
        else:  # namesakes
            persons[b].update(first_name=persons[a]["first_name"], last_name=persons[a]["last_name"])
        hard_negatives.append((f"crm__contacts:C{a}", f"crm__contacts:C{b}"))
    rows, truth = [], []
    for p, person in enumerate(persons):
        rows.append({"unique_id": f"crm__contacts:C{p}", "primary_key": f"crm_id:C{p}", **person})
        truth.append((f"crm__contacts:C{p}", p))
        if rng.random() < 0.25:
            rows.append({"unique_id": f"crm__contacts:D{p}", "primary_key": f"crm_id:D{p}", **_duplicate(rng, person)})
            truth.append((f"crm__contacts:D{p}", p))
    records = pl.DataFrame(rows).with_columns(
        anchor_key=pl.col("primary_key"),
        anchor_id=pl.int_range(pl.len(), dtype=pl.Int64),
        primary_namespace=pl.lit("crm_id"),
        source_table=pl.lit("crm__contacts"),
        seen_at=pl.lit(dt.datetime(2026, 1, 1)),
        country=pl.lit("PT"),
    )
    truth_frame = pl.DataFrame(truth, schema=["record_id", "person_id"], orient="row")
    return records, truth_frame, hard_negatives


NO_EDGES = pl.DataFrame(schema={"left_identity_id": pl.Int64, "right_identity_id": pl.Int64})


@pytest.fixture(scope="module")
def scored():
    records, truth, hard_negatives = planted()
    links = matching.match_records(records, NO_EDGES, threshold=0.9, name_variants=NAME_VARIANTS)
    return records, truth, hard_negatives, links


def _pair_set(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return {tuple(sorted(pair)) for pair in frame.select("left_record_id", "right_record_id").iter_rows()}


def test_blocking_keeps_nearly_every_true_pair(scored):
    records, truth, _, _ = scored
    prepared = matching.prepare_records(records, NAME_VARIANTS)
    rules = matching.blocking_rules(matching.present_fields(prepared))
    labelled = prepared.join(truth.rename({"record_id": "unique_id"}), on="unique_id")
    pairs = labelled.join(labelled, on="person_id", suffix="_r").filter(pl.col("unique_id") < pl.col("unique_id_r"))
    import duckdb

    with duckdb.connect() as con:
        con.register("p", prepared.to_arrow())
        con.register("truth_pairs", pairs.select("unique_id", "unique_id_r").to_arrow())
        either = " or ".join(
            f"coalesce(({rule}) or ({rule.replace('l.', 'x.').replace('r.', 'l.').replace('x.', 'r.')}), false)"
            for rule in rules
        )
        covered = con.execute(f"""
            select count(*) from truth_pairs
            join p as l on l.unique_id = truth_pairs.unique_id
            join p as r on r.unique_id = truth_pairs.unique_id_r
            where {either}""").fetchone()[0]
    assert pairs.height > 100
    assert covered / pairs.height >= 0.995, f"blocking keeps {covered} of {pairs.height} true pairs"


def test_duplicate_records_with_no_shared_identifier_merge_and_look_alikes_do_not(scored):
    records, truth, hard_negatives, links = scored
    true_pairs = {
        tuple(sorted(pair))
        for pair in truth.join(truth, on="person_id", suffix="_r")
        .filter(pl.col("record_id") < pl.col("record_id_r"))
        .select("record_id", "record_id_r")
        .iter_rows()
    }
    matched = _pair_set(links.filter(pl.col("decision") == "match"))
    correct = matched & true_pairs
    assert len(correct) >= 0.95 * len(true_pairs), f"found {len(correct)} of {len(true_pairs)} duplicates"
    assert len(correct) / len(matched) >= 0.995, f"false matches: {sorted(matched - true_pairs)[:5]}"
    assert not matched & {tuple(sorted(p)) for p in hard_negatives}
    # Every match within the CRM is a duplicate record between the two contacts' crm ids.
    assert set(links.filter(pl.col("decision") == "match")["link_type"]) == {"duplicate_record"}
    row = links.filter(pl.col("decision") == "match").row(0, named=True)
    assert row["left_identity_key"].startswith("crm_id:") and row["right_identity_key"].startswith("crm_id:")


def test_household_members_sharing_phone_address_and_surname_are_rejected_by_rule(scored):
    _, _, hard_negatives, links = scored
    households = {tuple(sorted(p)) for p in hard_negatives[:40]}
    rejected = links.filter(pl.col("decision") == "rejected")
    assert _pair_set(rejected) & households, "no household pair scored high enough to need the rule"
    assert set(rejected["decision_rule"]) <= {"different_first_name", "household_birth_date", "household_ambiguous"}
    assert not (_pair_set(links.filter(pl.col("decision") == "match")) & households)


NAMESPACES = pl.DataFrame(
    {
        "namespace": ["crm_id", "email", "phone", "device_id"],
        "priority": [1, 4, 5, 7],
        "is_unique_per_person": [True, False, False, False],
        "max_per_person": [None, None, None, 10],
    },
    schema_overrides={"max_per_person": pl.Int64},
)


def _replay(
    links: list[tuple[str, str, int, str]], apart: list[tuple[str, str]] = ()
) -> dict[tuple[str, str], tuple[bool, str | None]]:
    keys = sorted({k for left, right, _, _ in links for k in (left, right)})
    nodes = pl.DataFrame(
        {
            "identity_key": keys,
            "namespace": [k.split(":")[0] for k in keys],
            "identity_value": [k.split(":", 1)[1] for k in keys],
        }
    )
    edges = pl.DataFrame(
        {
            "left_identity_key": [l for l, _, _, _ in links],
            "right_identity_key": [r for _, r, _, _ in links],
            "last_seen_at": [dt.datetime(2026, 1, day) for _, _, day, _ in links],
            "link_type": [t for _, _, _, t in links],
        }
    )
    decided = link_decisions.replay_links(nodes, edges, NAMESPACES, apart)
    return {
        (r["left_identity_key"], r["right_identity_key"]): (r["is_kept"], r["drop_rule"]) for r in decided.to_dicts()
    }


def test_a_duplicate_record_joins_two_crm_ids_and_a_shared_device_still_cannot():
    decisions = _replay(
        [
            ("crm_id:A", "email:ana@x.example", 9, "deterministic"),
            ("crm_id:A2", "phone:+351910000001", 8, "deterministic"),
            ("crm_id:A", "crm_id:A2", 7, "duplicate_record"),  # Ana entered twice in the CRM
            ("crm_id:A2", "device_id:tablet", 6, "deterministic"),
            ("crm_id:B", "device_id:tablet", 5, "deterministic"),  # Ben uses the family tablet too
        ]
    )
    assert decisions[("crm_id:A", "crm_id:A2")] == (True, None)
    assert decisions[("crm_id:A2", "device_id:tablet")] == (True, None)
    assert decisions[("crm_id:B", "device_id:tablet")] == (False, "unique_per_person")


def test_the_same_match_as_a_cross_source_link_cannot_join_two_crm_ids():
    """Only a duplicate-record match (two records of one source) lets two crm ids join."""
    decisions = _replay(
        [
            ("crm_id:A", "email:ana@x.example", 9, "deterministic"),
            ("crm_id:A", "crm_id:A2", 7, "probabilistic"),
        ]
    )
    assert decisions[("crm_id:A", "crm_id:A2")] == (False, "unique_per_person")


def test_explain_describes_every_household_rule():
    from cdp.identity.explain import _decision_rule_texts

    assert _decision_rule_texts() == matching.DECISION_RULE_TEXT
    assert set(matching.DECISION_RULE_TEXT) == {name for name, _ in matching.HOUSEHOLD_RULES}


def test_no_chain_of_matches_bridges_records_the_household_rules_keep_apart():
    """Twins Ana and Eva (rejected: different first names) and a contact entered without a first name
    who matches both: only the first match replayed stands, the one that would bridge the twins drops."""
    decisions = _replay(
        [
            ("crm_id:ANA", "crm_id:X", 9, "duplicate_record"),
            ("crm_id:EVA", "crm_id:X", 8, "duplicate_record"),
        ],
        apart=[("crm_id:ANA", "crm_id:EVA")],
    )
    assert decisions[("crm_id:ANA", "crm_id:X")] == (True, None)
    assert decisions[("crm_id:EVA", "crm_id:X")] == (False, "kept_apart")


def _decide(records: list[dict]) -> dict[tuple[str, str], str | None]:
    """decide_pairs over every pair of `records` (one CRM source): (left id, right id) -> decision rule."""
    import duckdb

    prepared = matching.prepare_records(pl.DataFrame(records), NAME_VARIANTS).with_columns(
        source_table=pl.lit("crm__contacts"),
        primary_namespace=pl.lit("crm_id"),
        primary_key="crm_id:" + pl.col("unique_id"),
    )
    pairs = prepared.join(prepared, how="cross", suffix="_r").filter(pl.col("unique_id") < pl.col("unique_id_r"))
    pairs = pairs.rename({c: f"{c}_l" for c in prepared.columns})
    with duckdb.connect() as con:
        con.register("scored", pairs.to_arrow())
        decided = matching.decide_pairs(con, "scored", {"crm_id"}, set())
    return {(r["unique_id_l"], r["unique_id_r"]): r["decision_rule"] for r in decided.to_dicts()}


def test_a_birth_date_that_is_no_calendar_date_is_a_typo_not_another_persons_date():
    home = {"first_name": "zali", "last_name": "white", "street": "6 mildura street", "postcode": "3034"}
    rules = _decide(
        [
            {"unique_id": "a", **home, "birth_date": "1942-07-04"},
            {"unique_id": "b", **home, "birth_date": "1940-27-04"},  # month 27: keyed wrong
            {"unique_id": "c", **home, "birth_date": "1968-03-15"},  # a namesake at home: her daughter
        ]
    )
    assert rules[("a", "b")] is None
    assert rules[("a", "c")] == "household_birth_date"
