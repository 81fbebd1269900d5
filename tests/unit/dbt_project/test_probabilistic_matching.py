"""Probabilistic matching (Splink) on planted person records: duplicates that share no identifier
but agree on name (with typos), birth date and postcode are found; people who merely share a common
name are not; pairs the deterministic graph already joins are not repeated."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random

import polars as pl

from support.workspace import PROJECT_ROOT

MODELS = PROJECT_ROOT / "dbt_project" / "models" / "identity"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, MODELS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


matching = _load("identity_probabilistic_links")
link_decisions = _load("identity_link_decisions")

SYLLABLES = ["ka", "lo", "mi", "ra", "ne", "to", "su", "vi", "de", "an", "el", "or", "ya", "zu", "be", "fi"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def _typo(rng: random.Random, value: str) -> str:
    i = rng.randrange(len(value))
    return value[:i] + rng.choice("aeiouxyz") + value[i + 1 :]


def planted_records(seed: int = 7, people: int = 400):
    """CRM records for every person; a second record for 60% of them in another source: most share
    the email (a deterministic link), a planted set shares no identifier at all. Common-name
    strangers: pairs of different people with the same first and last name."""
    rng = random.Random(seed)
    rows, edges, hidden_pairs, strangers = [], [], [], []
    persons = []
    for _ in range(people):
        persons.append(
            {
                "first": _name(rng),
                "last": _name(rng),
                "dob": (dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20000))).isoformat(),
                "postcode": f"{rng.randint(10000, 99999)}",
                "city": rng.choice(["berlin", "hamburg", "munich"]),
            }
        )
    # Strangers: ten people share a first and last name with someone else (a different birth date and place).
    for p in range(10):
        persons[p + 100]["first"], persons[p + 100]["last"] = persons[p]["first"], persons[p]["last"]
        strangers.append((f"crm:{p}", f"crm:{p + 100}"))
    seen = dt.datetime(2026, 1, 1)
    for p, person in enumerate(persons):
        rows.append(
            {
                "unique_id": f"crm:{p}",
                "anchor_key": f"crm_id:C{p}",
                "seen_at": seen,
                "first_name": person["first"],
                "last_name": person["last"],
                "birth_date": person["dob"],
                "postcode": person["postcode"],
                "city": person["city"],
                "country": "DE",
                "email": f"p{p}@mail.example",
                "phone": None,
            }
        )
        edges.append((f"crm_id:C{p}", f"email:p{p}@mail.example"))
        if rng.random() < 0.6:
            hidden = rng.random() < 0.25
            first = _typo(rng, person["first"]) if rng.random() < 0.3 else person["first"]
            rows.append(
                {
                    "unique_id": f"shop:{p}",
                    "anchor_key": f"shop_id:S{p}",
                    "seen_at": seen,
                    "first_name": first,
                    "last_name": person["last"],
                    "birth_date": person["dob"],
                    "postcode": person["postcode"],
                    "city": person["city"],
                    "country": "DE",
                    "email": f"other{p}@work.example" if hidden else f"p{p}@mail.example",
                    "phone": None,
                }
            )
            if hidden:
                hidden_pairs.append((f"crm:{p}", f"shop:{p}"))
            else:
                edges.append((f"shop_id:S{p}", f"email:p{p}@mail.example"))
    # Identity ids number the keys in key order, as identity_identifiers does.
    ids = {
        key: number
        for number, key in enumerate(sorted({r["anchor_key"] for r in rows} | {k for e in edges for k in e}))
    }
    records = pl.DataFrame(
        [{**r, "anchor_id": ids[r["anchor_key"]]} for r in rows], schema_overrides={"phone": pl.String}
    )
    edge_frame = pl.DataFrame(
        [(left, right, ids[left], ids[right]) for left, right in edges],
        orient="row",
        schema=["left_identity_key", "right_identity_key", "left_identity_id", "right_identity_id"],
    )
    return records, edge_frame, set(hidden_pairs), set(strangers)


def _pairs(links: pl.DataFrame) -> set[tuple[str, str]]:
    return {
        tuple(sorted(pair, key=lambda r: (r.split(":")[0] != "crm", r)))
        for pair in links.select("left_record_id", "right_record_id").iter_rows()
    }


def test_finds_records_that_share_no_identifier_and_nothing_else():
    records, edges, hidden, strangers = planted_records()
    assert len(hidden) >= 40
    links = matching.match_records(records, edges, threshold=0.99).filter(pl.col("decision") == "match")
    found = _pairs(links)
    assert found <= hidden, f"false matches: {sorted(found - hidden)[:5]}"
    assert len(found) >= 0.9 * len(hidden), f"found {len(found)} of {len(hidden)} planted duplicates"
    assert not (found & strangers)
    # Every match is a new link between the records' anchors, with the evidence that made it.
    row = links.row(0, named=True)
    assert row["left_identity_key"] != row["right_identity_key"]
    assert row["match_probability"] >= 0.99
    assert {"last_name", "birth_date", "postcode"} <= set(row["agreeing_fields"].split(","))


def test_pairs_already_joined_by_an_identifier_are_not_repeated():
    records, edges, hidden, _ = planted_records()
    links = matching.match_records(records, edges, threshold=0.5)
    assert _pairs(links).isdisjoint({(f"crm:{p}", f"shop:{p}") for p in range(400)} - hidden), (
        "a pair the graph already joins came back"
    )


def test_a_cross_source_match_never_joins_two_values_of_a_unique_namespace():
    """Two CRM contacts that look like one person, matched as records of no known source (so not a
    duplicate record): the match is scored, and the linking rules drop it. (Two records of one source are
    a duplicate record: tests/unit/dbt_project/test_duplicate_records.py.)"""
    records, edges, _, _ = planted_records()
    twin = records.filter(pl.col("unique_id") == "crm:5").with_columns(
        pl.lit("crm:twin").alias("unique_id"),
        pl.lit("crm_id:TWIN").alias("anchor_key"),
        pl.lit(records["anchor_id"].max() + 1, pl.Int64).alias("anchor_id"),
        pl.lit(None, pl.String).alias("email"),
    )
    links = matching.match_records(pl.concat([records, twin]), edges, threshold=0.99)
    assert ("crm:5", "crm:twin") in _pairs(links) or ("crm:twin", "crm:5") in _pairs(links)
    match = links.filter(
        pl.col("left_record_id").is_in(["crm:twin", "crm:5"]) & pl.col("right_record_id").is_in(["crm:twin", "crm:5"])
    )
    candidate = match.select(
        "left_identity_key", "right_identity_key", "last_seen_at", pl.lit("probabilistic").alias("link_type")
    )
    deterministic = (
        edges.filter(pl.col("left_identity_key") == "crm_id:C5")
        .select("left_identity_key", "right_identity_key")
        .with_columns(pl.lit(dt.datetime(2026, 1, 2)).alias("last_seen_at"), pl.lit("deterministic").alias("link_type"))
    )
    keys = ["crm_id:C5", "crm_id:TWIN", "email:p5@mail.example"]
    nodes = pl.DataFrame(
        {
            "identity_key": keys,
            "namespace": [k.split(":")[0] for k in keys],
            "identity_value": [k.split(":", 1)[1] for k in keys],
        }
    )
    namespaces = pl.DataFrame(
        {
            "namespace": ["crm_id", "email"],
            "priority": [1, 4],
            "is_unique_per_person": [True, False],
            "max_per_person": [None, None],
        },
        schema_overrides={"max_per_person": pl.Int64},
    )
    decided = link_decisions.replay_links(
        nodes, pl.concat([deterministic, candidate], how="diagonal_relaxed"), namespaces
    )
    probabilistic = decided.filter(pl.col("link_type") == "probabilistic")
    assert probabilistic["is_kept"].to_list() == [False]
    assert probabilistic["drop_rule"].to_list() == ["unique_per_person"]
    assert decided.filter(pl.col("link_type") == "deterministic")["is_kept"].all()


def test_a_rerun_on_the_same_records_reuses_the_model_and_changes_no_link(tmp_path):
    records, edges, _, _ = planted_records()
    models = tmp_path / "match_models"
    first = matching.match_records(records, edges, threshold=0.5, model_path=models / "match_model_1.json")
    second = matching.match_records(records, edges, threshold=0.5, model_path=models / "match_model_2.json")
    assert second.equals(first)
    assert not (models / "match_model_2.json").exists(), "the second run trained again on the same records"
    # New records: a new model, written beside the first and as the latest.
    grown = pl.concat([records, records.head(1).with_columns(pl.lit("crm:NEW-1").alias("unique_id"))], how="diagonal")
    matching.match_records(grown, edges, threshold=0.5, model_path=models / "match_model_3.json")
    assert (models / "match_model_3.json").exists()
    assert (models / "latest.json").read_text() == (models / "match_model_3.json").read_text()
