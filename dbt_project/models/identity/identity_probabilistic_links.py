"""Probabilistic matching (Splink on DuckDB) of person records that share no identifier.

Records that carry a name (xdm_profile_records with a first or last name) are compared on every person
attribute XDM holds, each only where the data fills it: first and last name (exact with term
frequencies, nickname, Jaro-Winkler, phonetic, initial, swapped order), birth date (exact, day and
month transposed, one or two digits, same year), the address as one comparison (street, postcode with
near matches, city, region: a move counts once), country, email (exact, same username), phone and a
national id (a character or two off). The Fellegi-Sunter model trains itself on every run, needing no
labels and no deterministic links:
- u from random record pairs;
- m by expectation maximisation on pairs blocked on the names, then on a non-name attribute;
- the prior from those EM sessions, then settled to the model's own expected match count.
Candidate pairs come from several blocking rules (BLOCKING_RULES) so that a typo in any one attribute
does not hide a pair. The trained model is written as Splink JSON (match weights per level) to
<CDP_DATA_DIR>/identity/match_models/ on every run that trains; a run on the records the latest model was
trained on reuses it (training_key), so a rerun with nothing new changes no link.

Scores alone merge household members: they share address, phone, email and surname. So a scored pair
is then judged by the household rules (HOUSEHOLD_RULES): records whose first names clearly differ, or
that share an address, phone or email but not a birth date (or one of which has no first name), are
two people unless their national ids agree. Every pair scoring at least `match_threshold` whose
records sit in different deterministic components is listed with its decision (match or rejected, and
the rule); identity_link_decisions keeps rejected pairs apart through any chain of matches.

A match between two records of one source whose primary identifiers belong to a namespace that merges
duplicate records (seed identity_namespaces.merges_duplicate_records) is a duplicate record
(link_type duplicate_record) and links the two primary identifiers: the linking rules let it join two
values of a unique namespace. Any other match links the records' anchors (link_type probabilistic),
replayed after every deterministic link under the same rules.

Off when the var identity_probabilistic_matching is false: then the table is empty and Splink is not
imported. docs/identity.md has the measurements.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

LINK_SCHEMA = pa.schema(
    [
        ("left_identity_key", pa.string()),
        ("right_identity_key", pa.string()),
        ("left_record_id", pa.string()),
        ("right_record_id", pa.string()),
        ("match_probability", pa.float64()),
        ("match_weight", pa.float64()),
        ("agreeing_fields", pa.string()),
        ("link_type", pa.string()),
        ("decision", pa.string()),
        ("decision_rule", pa.string()),
        ("matched_via", pa.string()),
        ("first_seen_at", pa.timestamp("us")),
        ("last_seen_at", pa.timestamp("us")),
    ]
)

COMPARED_FIELDS = [
    "first_name",
    "last_name",
    "birth_date",
    "street",
    "postcode",
    "city",
    "region",
    "country",
    "email",
    "phone",
    "national_id",
]
# A field takes part in the model only where at least this share of records fills it (EM cannot
# estimate levels it never sees).
MIN_FILLED_SHARE = 0.01

# Candidate pairs: each rule is a SQL condition on l/r and the fields it needs. Their union must hold
# nearly every true pair (measured as blocking recall by `cdp bench-identity --matching`): one typo,
# missing value or move hides a pair from some rules, never from all.
BLOCKING_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("l.first_name = r.first_name and l.last_name = r.last_name", ("first_name", "last_name")),
    (
        "l.first_name_phonetic = r.first_name_phonetic and l.last_name_phonetic = r.last_name_phonetic",
        ("first_name", "last_name"),
    ),
    (
        "l.first_name_canonical = r.first_name_canonical and l.last_name_phonetic = r.last_name_phonetic",
        ("first_name", "last_name"),
    ),
    (
        "l.first_name_phonetic = r.last_name_phonetic and l.last_name_phonetic = r.first_name_phonetic",
        ("first_name", "last_name"),
    ),
    ("l.last_name = r.last_name and left(l.first_name, 2) = left(r.first_name, 2)", ("first_name", "last_name")),
    ("l.first_name = r.first_name and left(l.last_name, 2) = left(r.last_name, 2)", ("first_name", "last_name")),
    ("l.birth_date = r.birth_date and l.last_name_phonetic = r.last_name_phonetic", ("last_name", "birth_date")),
    ("l.birth_date = r.birth_date and l.first_name_phonetic = r.first_name_phonetic", ("first_name", "birth_date")),
    (
        "l.birth_date_swapped = r.birth_date and l.last_name_phonetic = r.last_name_phonetic",
        ("birth_date", "last_name"),
    ),
    (
        "substr(l.birth_date, 6) = substr(r.birth_date, 6) and l.last_name_phonetic = r.last_name_phonetic",
        ("birth_date", "last_name"),
    ),
    ("l.birth_date = r.birth_date and l.postcode = r.postcode", ("birth_date", "postcode")),
    ("l.birth_date = r.birth_date and l.street = r.street", ("birth_date", "street")),
    ("l.birth_date = r.birth_date and l.city = r.city", ("birth_date", "city")),
    ("l.last_name = r.last_name and l.postcode = r.postcode", ("last_name", "postcode")),
    ("l.first_name = r.first_name and l.postcode = r.postcode", ("first_name", "postcode")),
    ("l.street = r.street and l.last_name_phonetic = r.last_name_phonetic", ("street", "last_name")),
    ("l.street = r.street and l.first_name_phonetic = r.first_name_phonetic", ("street", "first_name")),
    # Same address: a swapped, mistyped or missing name with no birth date to go by.
    ("l.street = r.street and l.postcode = r.postcode", ("street", "postcode")),
    ("substr(l.birth_date, 6) = substr(r.birth_date, 6) and l.postcode = r.postcode", ("birth_date", "postcode")),
    # One name mistyped beyond its phonetic code and no birth date: the other name in the same city; every
    # field of the address mistyped: the birth date in the same postcode area.
    (
        "l.last_name = r.last_name and l.city = r.city and left(l.first_name, 1) = left(r.first_name, 1)",
        ("first_name", "last_name", "city"),
    ),
    ("l.birth_date = r.birth_date and left(l.postcode, 2) = left(r.postcode, 2)", ("birth_date", "postcode")),
    (
        "l.first_name = r.first_name and l.city = r.city and left(l.last_name, 1) = left(r.last_name, 1)",
        ("first_name", "last_name", "city"),
    ),
    ("l.email = r.email", ("email",)),
    ("l.phone = r.phone", ("phone",)),
    ("l.national_id = r.national_id", ("national_id",)),
]

# EM sessions: the first blocks on names (estimating every other field), the second on the first
# non-name field the data fills (estimating the names).
EM_NAME_BLOCK = ("l.first_name = r.first_name and l.last_name = r.last_name", ("first_name", "last_name"))
EM_OTHER_BLOCKS = [
    ("l.birth_date = r.birth_date", ("birth_date",)),
    ("l.postcode = r.postcode and l.street = r.street", ("postcode", "street")),
    ("l.national_id = r.national_id", ("national_id",)),
    ("l.email = r.email", ("email",)),
    ("l.phone = r.phone", ("phone",)),
]

# Swapped names: phonetically (cheap equalities), or with a typo besides (Jaro-Winkler, evaluated only
# for pairs no earlier level took).
SWAPPED_NAMES_PHONETIC = "first_name_phonetic_l = last_name_phonetic_r and last_name_phonetic_l = first_name_phonetic_r"
SWAPPED_NAMES = (
    f"(({SWAPPED_NAMES_PHONETIC}) or (jaro_winkler_similarity(first_name_l, last_name_r) >= 0.88 "
    "and jaro_winkler_similarity(last_name_l, first_name_r) >= 0.88))"
)
# SQL over a scored pair (columns <field>_l, <field>_r): when two person attributes clearly disagree
# (not a typo, nickname, initial or swapped order of one name).
FIRST_NAMES_DIFFER = f"""(
    first_name_l is not null and first_name_r is not null
    and first_name_l <> first_name_r
    and coalesce(first_name_canonical_l <> first_name_canonical_r, true)
    and coalesce(first_name_phonetic_l <> first_name_phonetic_r, true)
    and jaro_winkler_similarity(first_name_l, first_name_r) < 0.8
    and coalesce((case when length(first_name_l) = length(first_name_r) then hamming(first_name_l, first_name_r) end) > 1, true)
    and not ((length(first_name_l) = 1 or length(first_name_r) = 1) and left(first_name_l, 1) = left(first_name_r, 1))
    and not coalesce({SWAPPED_NAMES}, false)
)"""
# A birth date that is no calendar date (1940-27-04) is a keying error, not a different person's date.
BIRTH_DATES_DIFFER = """(
    birth_date_l is not null and birth_date_r is not null
    and try_cast(birth_date_l as date) is not null and try_cast(birth_date_r as date) is not null
    and birth_date_l <> birth_date_r
    and coalesce(birth_date_swapped_l <> birth_date_r, true)
    and coalesce((case when length(birth_date_l) = length(birth_date_r) then hamming(birth_date_l, birth_date_r) end) > 1, true)
)"""
BIRTH_DATES_AGREE = """(
    birth_date_l = birth_date_r or birth_date_swapped_l = birth_date_r
    or (case when length(birth_date_l) = length(birth_date_r) then hamming(birth_date_l, birth_date_r) end) <= 1
)"""
NATIONAL_IDS_AGREE = """(
    national_id_l = national_id_r
    or (case when length(national_id_l) = length(national_id_r) then hamming(national_id_l, national_id_r) end) <= 2
    or damerau_levenshtein(national_id_l, national_id_r) <= 2
)"""
# One street name recurs in many towns: an address is shared when the street and its postcode (else city)
# agree.
SHARED_CONTACT = """(
    coalesce(street_l = street_r and coalesce(postcode_l = postcode_r, city_l = city_r, true), false)
    or coalesce(phone_l = phone_r, false) or coalesce(email_l = email_r, false)
)"""
# (rule name, SQL condition on a scored pair): a pair meeting one is two people, whatever it scored.
# Family members share surname, address, phone and email, twins a birth date too: what Fellegi-Sunter
# weighs as overwhelming evidence. What tells them apart is the first name, and for records that share
# a contact, the birth date.
HOUSEHOLD_RULES = [
    ("different_first_name", FIRST_NAMES_DIFFER),
    ("household_birth_date", f"{SHARED_CONTACT} and {BIRTH_DATES_DIFFER}"),
    # A record without a first name or a birth date that shares a contact with two people it could each be
    # (twins, or two of a household with the same first name) would bridge them: all its matches are
    # rejected. With one such person at the address, the evidence points to them (decide_pairs finds the
    # ambiguous records: is_ambiguous_l, is_ambiguous_r).
    ("household_ambiguous", "is_ambiguous_l or is_ambiguous_r"),
]
# Could two records be one person, as far as a household goes: first names and birth dates do not clearly
# differ (where both are known).
COMPATIBLE = f"not coalesce({FIRST_NAMES_DIFFER}, false) and not coalesce({BIRTH_DATES_DIFFER}, false)"
DECISION_RULE_TEXT = {
    "different_first_name": "their first names differ (not a typo, nickname, initial or swapped order): "
    "a family member, twin or namesake",
    "household_birth_date": "they share an address, phone or email but their birth dates differ",
    "household_ambiguous": "one has no first name or no birth date and shares an address, phone or email with "
    "two people it could each be (twins, or two of a household with the same first name)",
}


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


_SOUNDEX = {
    c: d
    for letters, d in (("bfpv", "1"), ("cgjkqsxz", "2"), ("dt", "3"), ("l", "4"), ("mn", "5"), ("r", "6"))
    for c in letters
}


@functools.lru_cache(maxsize=200_000)
def soundex(name: str | None) -> str | None:
    """American Soundex of a (normalized) name: letter + three digits; None for no letters."""
    letters = [c for c in (name or "") if c.isalpha() and c.isascii()]
    if not letters:
        return None
    code, previous = letters[0].upper(), _SOUNDEX.get(letters[0], "")
    for c in letters[1:]:
        digit = _SOUNDEX.get(c, "")
        if digit and digit != previous:
            code += digit
        if c not in "hw":  # h and w do not separate equal codes; vowels do
            previous = digit
    return (code + "000")[:4]


def prepare_records(records: pl.DataFrame, name_variants: pl.DataFrame | None = None) -> pl.DataFrame:
    """The derived columns the comparisons and blocking rules use: phonetic codes of the names, the
    canonical first name (nicknames), the birth date with day and month swapped."""
    for field in COMPARED_FIELDS:
        if field not in records.columns:
            records = records.with_columns(pl.lit(None, pl.String).alias(field))
    records = records.with_columns(pl.col(field).cast(pl.String) for field in COMPARED_FIELDS)
    variants = (
        name_variants.select(pl.col("variant").str.to_lowercase(), pl.col("canonical").str.to_lowercase())
        if name_variants is not None and name_variants.height
        else pl.DataFrame(schema={"variant": pl.String, "canonical": pl.String})
    )
    records = records.join(
        variants.unique("variant").rename({"variant": "first_name", "canonical": "first_name_canonical"}),
        on="first_name",
        how="left",
        maintain_order="left",
    ).with_columns(pl.coalesce("first_name_canonical", "first_name").alias("first_name_canonical"))
    swapped = pl.col("birth_date").str.extract(r"^(\d{4})-(\d{2})-(\d{2})$", 1) + pl.lit("-")
    day = pl.col("birth_date").str.extract(r"^\d{4}-\d{2}-(\d{2})$", 1)
    month = pl.col("birth_date").str.extract(r"^\d{4}-(\d{2})-\d{2}$", 1)
    return records.with_columns(
        pl.col("first_name").map_elements(soundex, return_dtype=pl.String).alias("first_name_phonetic"),
        pl.col("last_name").map_elements(soundex, return_dtype=pl.String).alias("last_name_phonetic"),
        pl.when(day.cast(pl.Int32, strict=False) <= 12).then(swapped + day + "-" + month).alias("birth_date_swapped"),
    )


def present_fields(records: pl.DataFrame) -> list[str]:
    """Compared fields the data fills often enough to train on."""
    if records.is_empty():
        return []
    filled = records.select(pl.col(f).is_not_null().mean() for f in COMPARED_FIELDS).row(0, named=True)
    return [f for f in COMPARED_FIELDS if (filled[f] or 0) >= MIN_FILLED_SHARE]


def comparisons(fields: list[str]) -> list:
    """One Splink comparison per present field, levels from most to least specific."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    def custom(name: str, levels: list) -> cl.CustomComparison:
        return cl.CustomComparison(comparison_levels=levels, output_column_name=name)

    def lvl(condition: str, label: str):
        return cll.CustomLevel(condition, label_for_charts=label)

    built = {
        "first_name": lambda: custom(
            "first_name",
            [
                cll.NullLevel("first_name"),
                cll.ExactMatchLevel("first_name").configure(tf_adjustment_column="first_name"),
                lvl("first_name_canonical_l = first_name_canonical_r", "same name or nickname"),
                cll.JaroWinklerLevel("first_name", 0.92),
                lvl(SWAPPED_NAMES, "first and last name swapped"),
                cll.JaroWinklerLevel("first_name", 0.85),
                lvl("first_name_phonetic_l = first_name_phonetic_r", "phonetic match"),
                lvl(
                    "(length(first_name_l) = 1 or length(first_name_r) = 1) and left(first_name_l, 1) = left(first_name_r, 1)",
                    "initial",
                ),
                cll.ElseLevel(),
            ],
        ),
        "last_name": lambda: custom(
            "last_name",
            [
                cll.NullLevel("last_name"),
                cll.ExactMatchLevel("last_name").configure(tf_adjustment_column="last_name"),
                cll.JaroWinklerLevel("last_name", 0.92),
                # Swapped names are evidence once, in first_name: here the level carries no weight.
                lvl(SWAPPED_NAMES, "first and last name swapped (weighed in first_name)").configure(is_null_level=True),
                cll.JaroWinklerLevel("last_name", 0.85),
                lvl("last_name_phonetic_l = last_name_phonetic_r", "phonetic match"),
                cll.ElseLevel(),
            ],
        ),
        "birth_date": lambda: custom(
            "birth_date",
            [
                cll.NullLevel("birth_date"),
                cll.ExactMatchLevel("birth_date"),
                lvl("birth_date_swapped_l = birth_date_r", "day and month transposed"),
                lvl(_hamming("birth_date", 1), "one digit differs"),
                lvl(_hamming("birth_date", 2), "two digits differ"),
                lvl("left(birth_date_l, 4) = left(birth_date_r, 4)", "same year"),
                cll.ElseLevel(),
            ],
        ),
        "country": lambda: custom(
            "country", [cll.NullLevel("country"), cll.ExactMatchLevel("country"), cll.ElseLevel()]
        ),
        # Usernames often contain the person's name (and a number): a fuzzy level would score namesakes
        # (anna.meyer12@ ~ anna.meyer17@), so only the same username at another domain counts.
        "email": lambda: custom(
            "email",
            [
                cll.NullLevel("email"),
                cll.ExactMatchLevel("email"),
                lvl("split_part(email_l, '@', 1) = split_part(email_r, '@', 1)", "same username, other domain"),
                cll.ElseLevel(),
            ],
        ),
        "phone": lambda: custom(
            "phone",
            [
                cll.NullLevel("phone"),
                cll.ExactMatchLevel("phone"),
                lvl(_hamming("phone", 1), "one digit differs"),
                lvl("right(phone_l, 7) = right(phone_r, 7)", "same last seven digits"),
                cll.ElseLevel(),
            ],
        ),
        "national_id": lambda: custom(
            "national_id",
            [
                cll.NullLevel("national_id"),
                cll.ExactMatchLevel("national_id"),
                lvl(_hamming("national_id", 1), "one character differs"),
                lvl(_hamming("national_id", 2), "two characters differ"),
                # Only pairs no earlier level took pay for the edit distance.
                lvl("damerau_levenshtein(national_id_l, national_id_r) <= 2", "two edits or transpositions"),
                cll.ElseLevel(),
            ],
        ),
    }
    chosen = [built[field]() for field in fields if field in built]
    address = [field for field in ADDRESS_FIELDS if field in fields]
    if address:
        chosen.append(_address_comparison(address))
    return chosen


# A move changes street, postcode and city at once: compared as one address, a move is counted once
# (three independent comparisons would count it three times and bury true duplicates who moved).
ADDRESS_FIELDS = ("street", "postcode", "city", "region")


def _address_comparison(fields: list[str]):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    def lvl(condition: str, label: str):
        return cll.CustomLevel(condition, label_for_charts=label)

    def missing(side: str) -> str:
        return "(" + " and ".join(f"{field}_{side} is null" for field in fields) + ")"

    has = set(fields)
    levels = [lvl(f"{missing('l')} or {missing('r')}", "no address on one side").configure(is_null_level=True)]
    if {"street", "postcode"} <= has:
        levels.append(lvl("street_l = street_r and postcode_l = postcode_r", "same street and postcode"))
    if "street" in has:
        levels.append(cll.ExactMatchLevel("street").configure(tf_adjustment_column="street"))
        near = [f"{f}_l = {f}_r" for f in ("postcode", "city") if f in has]
        if near:
            levels.append(
                lvl(
                    f"jaro_winkler_similarity(street_l, street_r) >= 0.88 and ({' or '.join(near)})",
                    "similar street in the same postcode or city",
                )
            )
        # A house number and street name are specific on their own: a typo in it and one in the postcode
        # and town is the same address.
        levels.append(lvl("jaro_winkler_similarity(street_l, street_r) >= 0.94", "similar street elsewhere"))
    # A missing street is not a different street: "same postcode (or city), street unknown on one side"
    # is what a record entered without its street looks like, while "same postcode, streets differ" is a
    # neighbour or a move nearby, so they are separate levels.
    street_unknown = "(street_l is null or street_r is null)" if "street" in has else "true"
    if "postcode" in has:
        if "street" in has:
            levels.append(
                lvl(f"postcode_l = postcode_r and {street_unknown}", "same postcode, street unknown on one side")
            )
        levels.append(cll.ExactMatchLevel("postcode").configure(tf_adjustment_column="postcode"))
        levels.append(lvl(_hamming("postcode", 1), "postcode one character off"))
    if "city" in has:
        if "street" in has or "postcode" in has:
            unknown = " and ".join(f"({f}_l is null or {f}_r is null)" for f in ("street", "postcode") if f in has)
            levels.append(lvl(f"city_l = city_r and {unknown}", "same city, street and postcode unknown on one side"))
        levels.append(cll.ExactMatchLevel("city").configure(tf_adjustment_column="city"))
        levels.append(cll.JaroWinklerLevel("city", 0.92))
    if "region" in has:
        levels.append(cll.ExactMatchLevel("region"))
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(comparison_levels=levels, output_column_name="address")


def _hamming(field: str, at_most: int) -> str:
    """Equal-length values differing in at most `at_most` positions (a mistyped digit). Much cheaper than
    an edit distance, which DuckDB computes about 40x slower than Jaro-Winkler."""
    return f"(case when length({field}_l) = length({field}_r) then hamming({field}_l, {field}_r) end) <= {at_most}"


def blocking_rules(fields: list[str]) -> list[str]:
    """The blocking rules whose fields the data fills."""
    return [rule for rule, needs in BLOCKING_RULES if set(needs) <= set(fields)]


def _deterministic_components(records: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Component of each record's anchor over the deterministic links (integer identity ids)."""
    node_count = (
        int(
            max(
                records["anchor_id"].max() or 0,
                edges["left_identity_id"].max() or 0,
                edges["right_identity_id"].max() or 0,
            )
        )
        + 1
    )
    graph = coo_matrix(
        (
            np.ones(edges.height, dtype=np.int8),
            (edges["left_identity_id"].to_numpy(), edges["right_identity_id"].to_numpy()),
        ),
        shape=(node_count, node_count),
    )
    labels = connected_components(graph, directed=False)[1]
    return records.with_columns(pl.Series("component", labels[records["anchor_id"].to_numpy()], dtype=pl.Int64))


def _clamp_em_probabilities() -> None:
    """Splink 5.0's EM can drive the m of a level only non-matches reach (e.g. "same year, other day")
    to exactly 0, and then refuses its own value (ValueError below 1e-300). Clamp what EM hands back to
    that floor: the level keeps a very negative weight, as EM meant."""
    import splink.internals.expectation_maximisation as em

    if getattr(em.m_u_records_to_lookup_dict, "_cdp_clamped", False):
        return
    original = em.m_u_records_to_lookup_dict

    def clamped(records):
        for record in records:
            for key in ("m_probability", "u_probability"):
                value = record.get(key)
                if isinstance(value, float) and value < 1e-300:
                    record[key] = 1e-300
        return original(records)

    clamped._cdp_clamped = True
    em.m_u_records_to_lookup_dict = clamped


def untrained_settings(records: pl.DataFrame):
    """The Splink settings for `records` (prepared) before training, or None when the data has too little
    to compare (fewer than two records or no name)."""
    from splink import SettingsCreator

    fields = present_fields(records)
    if records.height < 2 or not {"first_name", "last_name"} & set(fields):
        return None
    retained = [
        c
        for c in (
            "anchor_key",
            "primary_key",
            "primary_namespace",
            "source_table",
            "component",
            "seen_at",
            "first_name_canonical",
            "first_name_phonetic",
            "last_name_phonetic",
            "birth_date_swapped",
            *COMPARED_FIELDS,
        )
        if c in records.columns
    ]
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=1e-4,  # replaced by the EM sessions' estimate
        comparisons=comparisons(fields),
        blocking_rules_to_generate_predictions=blocking_rules(fields),
        additional_columns_to_retain=retained,
        retain_intermediate_calculation_columns=False,
    )


def training_key(records: pl.DataFrame, seed: int) -> str | None:
    """What a trained model depends on: the prepared records, the untrained settings and the seed.
    Training is not bit-for-bit repeatable (DuckDB samples and sums in parallel), so a run whose key
    matches the last model's reuses that model: a rerun with nothing new changes no link."""
    settings = untrained_settings(records)
    if settings is None:
        return None
    digest = hashlib.sha256(f"{seed}|".encode())
    digest.update(json.dumps(settings.create_settings_dict("duckdb"), sort_keys=True, default=str).encode())
    digest.update(records.sort("unique_id").write_csv().encode())
    return digest.hexdigest()


def train_model(con: duckdb.DuckDBPyConnection, records: pl.DataFrame, seed: int = 42, trained: dict | None = None):
    """A trained Splink linker over `records` (prepared), or None when the data has too little to
    compare (fewer than two records or no name). `trained`: a saved model (Splink JSON) to use as it is."""
    from splink import DuckDBAPI, Linker

    _clamp_em_probabilities()
    settings = untrained_settings(records)
    if settings is None:
        return None
    fields = present_fields(records)
    db = DuckDBAPI(connection=con)
    table = db.register(records.to_arrow(), dataset_display_name="person_records")
    if trained is not None:
        return Linker(table, trained, log_level=logging.ERROR)
    linker = Linker(table, settings, log_level=logging.ERROR)
    linker.training.estimate_u_using_random_sampling(max_pairs=3e5, seed=seed)
    sessions = []
    if {"first_name", "last_name"} <= set(fields):
        sessions.append(EM_NAME_BLOCK[0])
    other = next((rule for rule, needs in EM_OTHER_BLOCKS if set(needs) <= set(fields)), None)
    if other:
        sessions.append(other)
    for rule in sessions:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, populate_probability_two_random_records_match_from_trained_values=True
        )
    _condition_on_unlinked(linker)
    _settle_prior(con, linker, records.height)
    return linker


# Fields that are also identifier namespaces: two records sharing a linkable value are linked already.
LINKING_FIELDS = ("email", "phone")


def _condition_on_unlinked(linker) -> None:
    """Re-weigh the comparisons of fields that also link records deterministically (email, phone) for the
    pairs that are scored: only pairs in different deterministic components, which by construction share no
    linkable value. EM learns their m from every pair, mostly pairs the identifier linked already, so a
    differing email counts against a duplicate record (-2.2 bits each for email and phone on the
    dirty-duplicates scenario), although a differing value is what nearly every scored pair has, duplicates
    included. Conditioned on the scored population, m(differs) = u(differs) (no weight), and the other
    levels share what is left in the proportions EM found."""
    for comparison in linker._settings_obj.comparisons:
        if comparison.output_column_name not in LINKING_FIELDS:
            continue
        levels = [level for level in comparison.comparison_levels if not level.is_null_level]
        differs, agreeing = levels[-1], levels[:-1]
        u_differs = differs.u_probability
        if u_differs is None or not agreeing:
            continue
        m_agreeing = [level.m_probability or 0.0 for level in agreeing]
        total = sum(m_agreeing)
        differs.m_probability = u_differs
        for level, m in zip(agreeing, m_agreeing):
            share = m / total if total > 0 else 1.0 / len(agreeing)
            level.m_probability = max(share * (1.0 - u_differs), 1e-300)


def _settle_prior(con: duckdb.DuckDBPyConnection, linker, record_count: int, rounds: int = 3) -> None:
    """The prior as the model itself predicts it: the expected number of matches (the sum of the match
    probabilities of every candidate pair; pairs outside the blocks are almost surely not matches)
    over all record pairs, iterated to a fixed point. The EM sessions' own estimate is biased by their
    blocking (several times too high on the data measured), which turns namesakes into matches."""
    settings = linker._settings_obj
    total_pairs = record_count * (record_count - 1) / 2
    for _ in range(rounds):
        predictions = linker.inference.predict()
        expected = con.execute(
            f"select coalesce(sum(match_probability), 0) from {predictions.physical_name}"
        ).fetchone()[0]
        predictions.drop_table_from_database_and_remove_from_cache()
        prior = min(max(expected / total_pairs, 1e-12), 0.5)
        if abs(prior - settings._probability_two_random_records_match) <= 0.01 * prior:
            settings._probability_two_random_records_match = prior
            return
        settings._probability_two_random_records_match = prior


def _ambiguous_records(con: duckdb.DuckDBPyConnection, records_table: str) -> str:
    """SQL selecting the unique_id of every record lacking a first name or a birth date that could be either
    of two people: it shares a contact with two records it is compatible with (COMPATIBLE) that are
    clearly not one person (their first names differ, or their birth dates). A record with both a first
    name and a birth date is never ambiguous: any two records compatible with it are compatible with each
    other on those."""
    columns = [
        "unique_id",
        "first_name",
        "first_name_canonical",
        "first_name_phonetic",
        "last_name",
        "last_name_phonetic",
    ]
    columns += ["street", "postcode", "city", "phone", "email", "birth_date", "birth_date_swapped"]

    def side(alias: str, suffix: str) -> str:
        return ", ".join(f"{alias}.{c} as {c}_{suffix}" for c in columns)

    # Candidate partners by each contact (equi-joins), then the full test.
    contact_joins = " union ".join(
        f"select {side('l', 'l')}, {side('r', 'r')} from {records_table} as l "
        f"join {records_table} as r on l.{field} = r.{field} and l.unique_id <> r.unique_id "
        "and (l.first_name is null or l.birth_date is null)"
        for field in ("street", "phone", "email")
    )
    con.execute(f"""
        create or replace temp table household_partners as
        select unique_id_l as record_id, {", ".join(f"{c}_r as {c}" for c in columns)}
        from ({contact_joins})
        where {SHARED_CONTACT} and {COMPATIBLE}
    """)
    pair = ", ".join(f"a.{c} as {c}_l, b.{c} as {c}_r" for c in columns)
    return f"""
        select distinct record_id as unique_id from (
            select a.record_id, {pair}
            from household_partners as a
            join household_partners as b on b.record_id = a.record_id and b.unique_id > a.unique_id
        ) where not ({COMPATIBLE})
    """


def decide_pairs(
    con: duckdb.DuckDBPyConnection,
    scored_table: str,
    merging_namespaces: set[str],
    kept_apart: set[str],
    records_table: str | None = None,
) -> pl.DataFrame:
    """The household rules and the duplicate-record test over a table of scored pairs (records_table: the
    prepared records, to find the records a household makes ambiguous). A pair whose national ids
    agree is one person whatever else differs: no family member shares one."""
    rule_case = (
        f"case when coalesce({NATIONAL_IDS_AGREE}, false) then null "
        + " ".join(f"when {sql} then '{name}'" for name, sql in HOUSEHOLD_RULES)
        + " end"
    )
    agreeing = ", ".join(f"case when {field}_l = {field}_r then '{field}' end" for field in COMPARED_FIELDS)
    ambiguous = _ambiguous_records(con, records_table) if records_table else "select null as unique_id"
    frame = con.execute(
        f"""
        with ambiguous as ({ambiguous}),
        flagged as (
            select scored.*,
                   scored.unique_id_l in (select unique_id from ambiguous) as is_ambiguous_l,
                   scored.unique_id_r in (select unique_id from ambiguous) as is_ambiguous_r
            from {scored_table} as scored
        )
        select * exclude (is_ambiguous_l, is_ambiguous_r),
               {rule_case} as decision_rule, concat_ws(',', {agreeing}) as agreeing_fields
        from flagged
        """
    ).pl()
    is_duplicate = (
        (pl.col("source_table_l") == pl.col("source_table_r"))
        & (pl.col("primary_namespace_l") == pl.col("primary_namespace_r"))
        & pl.col("primary_namespace_l").is_in(sorted(merging_namespaces))
        & ~pl.col("source_table_l").is_in(sorted(kept_apart))
        & (pl.col("primary_key_l") != pl.col("primary_key_r"))
    ).fill_null(False)
    return frame.with_columns(
        pl.when(is_duplicate).then(pl.lit("duplicate_record")).otherwise(pl.lit("probabilistic")).alias("link_type"),
        pl.when(pl.col("decision_rule").is_null())
        .then(pl.lit("match"))
        .otherwise(pl.lit("rejected"))
        .alias("decision"),
    )


# Duplicates found through a third record: at most this many matches apart (1: a record matching one
# duplicate shares an identifier with the other; 2: a record matching both).
TRANSITIVE_HOPS = 2


def _transitive_duplicates(
    con: duckdb.DuckDBPyConnection,
    decided: pl.DataFrame,
    records_table: str,
    merging_namespaces: set[str],
    kept_apart: set[str],
) -> pl.DataFrame:
    """Duplicate records that matching joins only through a third record: a loyalty member whose email is
    on one CRM contact matches that contact's second entry (the two entries sit in components one match
    apart), or a record matches both entries (two matches apart). Without this, the linking rules drop the
    match as giving one person two CRM ids. Each such pair of records of one merging source is judged by
    the household rules like any scored pair and must be compatible (first names and birth dates do not
    clearly differ); its probability is the product of the matches that join it. Returns decide_pairs rows
    with matched_via (the matches it went through)."""
    matched = decided.filter(pl.col("decision") == "match").select(
        pl.col("component_l").alias("a"),
        pl.col("component_r").alias("b"),
        "match_probability",
        (pl.col("unique_id_l") + " ~ " + pl.col("unique_id_r")).alias("via"),
    )
    if matched.is_empty() or not merging_namespaces:
        return decided.clear()
    hops = pl.concat(
        [matched, matched.select(pl.col("b").alias("a"), pl.col("a").alias("b"), "match_probability", "via")]
    )
    hops = hops.sort("match_probability", descending=True).unique(["a", "b"], keep="first")
    reach = hops
    if TRANSITIVE_HOPS >= 2:
        two = (
            hops.join(hops, left_on="b", right_on="a", suffix="_2")
            .filter(pl.col("a") != pl.col("b_2"))
            .select(
                "a",
                pl.col("b_2").alias("b"),
                (pl.col("match_probability") * pl.col("match_probability_2")).alias("match_probability"),
                (pl.col("via") + "; " + pl.col("via_2")).alias("via"),
            )
        )
        reach = pl.concat([hops, two]).sort("match_probability", descending=True).unique(["a", "b"], keep="first")
    con.register("component_reach", reach.filter(pl.col("a") < pl.col("b")).to_arrow())
    decided_pairs = decided.select("unique_id_l", "unique_id_r")
    con.register(
        "already_decided",
        pl.concat(
            [
                decided_pairs,
                decided_pairs.select(
                    pl.col("unique_id_r").alias("unique_id_l"), pl.col("unique_id_l").alias("unique_id_r")
                ),
            ]
        )
        .select(pl.col("unique_id_l").alias("x_id"), pl.col("unique_id_r").alias("y_id"))
        .to_arrow(),
    )
    namespaces = ", ".join(f"'{n}'" for n in sorted(merging_namespaces))
    apart = " and ".join(f"x.source_table <> '{t}'" for t in sorted(kept_apart)) or "true"
    columns = [c for c in con.execute(f"select * from {records_table} limit 0").pl().columns]
    # In two steps: joined at once, the optimizer may pair every two records of a source first.
    con.execute(f"""
        create or replace temp table transitive_left as
        select reach.*, x.*
        from component_reach as reach
        join {records_table} as x on x.component = reach.a
        where x.primary_namespace in ({namespaces}) and {apart}
    """)
    x_columns = ", ".join(f"x.{c} as {c}_l, y.{c} as {c}_r" for c in columns)
    con.execute(f"""
        create or replace temp table transitive_pairs as
        with candidates as (
            select {x_columns}, x.match_probability,
                   log2(x.match_probability / greatest(1 - x.match_probability, 1e-15)) as match_weight,
                   x.via as matched_via
            from transitive_left as x
            join {records_table} as y
                on y.component = x.b and y.source_table = x.source_table
                and y.primary_namespace = x.primary_namespace and y.primary_key <> x.primary_key
        )
        select candidates.* from candidates
        anti join already_decided on already_decided.x_id = candidates.unique_id_l
            and already_decided.y_id = candidates.unique_id_r
    """)
    con.execute(f"delete from transitive_pairs where not ({COMPATIBLE})")
    found = decide_pairs(con, "transitive_pairs", merging_namespaces, kept_apart, records_table=records_table)
    return found.filter(pl.col("decision") == "match")


def match_records(
    records: pl.DataFrame,
    edges: pl.DataFrame,
    threshold: float,
    seed: int = 42,
    name_variants: pl.DataFrame | None = None,
    merging_namespaces: set[str] | frozenset[str] = frozenset({"crm_id", "shop_customer_id", "loyalty_id"}),
    kept_apart: set[str] | frozenset[str] = frozenset(),
    model_path: Path | None = None,
) -> pl.DataFrame:
    """records: unique_id, anchor_key, anchor_id, seen_at, (primary_key, primary_namespace, source_table)
    and the COMPARED_FIELDS present (normalized). edges: the deterministic left_identity_id,
    right_identity_id. Returns LINK_SCHEMA rows: every pair across deterministic components scoring at
    least `threshold`, with its decision. Writes the trained model as Splink JSON to model_path and to
    latest.json beside it, unless latest.json was trained on the same records (then it is used as it is)."""
    for column in ("primary_key", "primary_namespace", "source_table"):
        if column not in records.columns:
            records = records.with_columns(pl.lit(None, pl.String).alias(column))
    records = prepare_records(_deterministic_components(records, edges), name_variants).drop("anchor_id")
    key = training_key(records, seed)
    latest = model_path.parent / "latest.json" if model_path is not None else None
    latest_key = latest.with_suffix(".training_key") if latest is not None else None
    reused = None
    if key is not None and latest_key is not None and latest_key.is_file() and latest_key.read_text() == key:
        reused = json.loads(latest.read_text())
    # A private in-memory database: Splink's work tables never reach the warehouse.
    with duckdb.connect() as con:
        con.execute("set threads to 2")
        linker = train_model(con, records, seed, trained=reused)
        if linker is None:
            return pl.from_arrow(LINK_SCHEMA.empty_table())
        if latest is not None and reused is None:
            model_path.parent.mkdir(parents=True, exist_ok=True)
            linker.misc.save_model_to_json(str(model_path), overwrite=True)
            latest.write_text(model_path.read_text())
            latest.with_suffix(".training_key").write_text(key)
        scored = linker.inference.predict(threshold_match_probability=threshold)
        con.execute(
            f"create temp table scored_pairs as select * from {scored.physical_name} where component_l <> component_r"
        )
        con.register("prepared_records", records.to_arrow())
        decided = decide_pairs(
            con, "scored_pairs", set(merging_namespaces), set(kept_apart), records_table="prepared_records"
        ).with_columns(pl.lit(None, pl.String).alias("matched_via"))
        through = _transitive_duplicates(con, decided, "prepared_records", set(merging_namespaces), set(kept_apart))
        decided = pl.concat([decided, through], how="diagonal_relaxed")
    if decided.is_empty():
        return pl.from_arrow(LINK_SCHEMA.empty_table())
    duplicate = pl.col("link_type") == "duplicate_record"
    return decided.select(
        pl.when(duplicate).then(pl.col("primary_key_l")).otherwise(pl.col("anchor_key_l")).alias("left_identity_key"),
        pl.when(duplicate).then(pl.col("primary_key_r")).otherwise(pl.col("anchor_key_r")).alias("right_identity_key"),
        pl.col("unique_id_l").alias("left_record_id"),
        pl.col("unique_id_r").alias("right_record_id"),
        "match_probability",
        "match_weight",
        "agreeing_fields",
        "link_type",
        "decision",
        "decision_rule",
        "matched_via",
        pl.min_horizontal("seen_at_l", "seen_at_r").alias("first_seen_at"),
        pl.max_horizontal("seen_at_l", "seen_at_r").alias("last_seen_at"),
    ).sort("left_record_id", "right_record_id")


def model_path_for_run() -> Path | None:
    """Where this run's trained model goes: <CDP_DATA_DIR>/identity/match_models/<UTC time>.json."""
    data_dir = os.environ.get("CDP_DATA_DIR")
    if not data_dir:
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return Path(data_dir) / "identity" / "match_models" / f"match_model_{stamp}.json"


def model(dbt, session):
    dbt.config(materialized="table")
    if not _flag(dbt.config.get("probabilistic_matching")):
        return LINK_SCHEMA.empty_table()
    threshold = float(dbt.config.get("match_threshold"))
    kept_apart = json.loads(str(dbt.config.get("duplicate_records_kept_apart") or "[]"))
    records = pl.from_arrow(dbt.ref("identity_person_records").arrow().read_all()).rename({"record_id": "unique_id"})
    edges = pl.from_arrow(dbt.ref("identity_edges").project("left_identity_id, right_identity_id").arrow().read_all())
    variants = pl.from_arrow(dbt.ref("identity_name_variants").arrow().read_all())
    merging = {
        row[0]
        for row in dbt.ref("identity_namespaces").filter("merges_duplicate_records").project("namespace").fetchall()
    }
    path = model_path_for_run()
    links = match_records(
        records,
        edges,
        threshold,
        name_variants=variants,
        merging_namespaces=merging,
        kept_apart=set(kept_apart),
        model_path=path,
    )
    return links.to_arrow().cast(LINK_SCHEMA)
