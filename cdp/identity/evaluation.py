"""Pairwise precision and recall of the person clustering against a ground truth.

The truth is a CSV with columns source, table, record_id, person_id: which person each source
record belongs to (blank person_id = belongs to nobody, not evaluated). Every record of the truth
counts: one the warehouse does not hold (quarantined by its contract, or never loaded) and one the
identity graph could not resolve each count as a singleton, as they are for a user. The profile count
reported is the profiles actually built; singletons are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class ClusteringQuality:
    records: int
    true_persons: int
    predicted_profiles: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    worst_overmerges: list[tuple[str, int]] = field(default_factory=list)  # (profile_id, persons in it)
    worst_undermerges: list[tuple[str, int]] = field(default_factory=list)  # (person_id, profiles it spans)
    # The same figures over records that carry a person-level identifier (email, phone, crm/shop/loyalty id):
    # what any matcher can hope to link; anonymous cookie and device events are left out.
    identified: ClusteringQuality | None = None
    size_histogram: list[tuple[str, int]] = field(default_factory=list)  # (records per profile band, profiles)
    profiles_built: int | None = None  # rows of profiles.profiles (or profile ids of the identity graph)
    records_not_in_warehouse: int = 0  # quarantined or never loaded: singletons
    records_unresolved: int = 0  # in the warehouse, no linkable identifier: singletons

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def describe(self) -> str:
        text = (
            f"pairwise precision {self.precision:.4f}, recall {self.recall:.4f}, F1 {self.f1:.4f} "
            f"over {self.records:,} records of {self.true_persons:,} persons"
        )
        if self.profiles_built is not None:
            text += (
                f": {self.profiles_built:,} profiles built; {self.records_not_in_warehouse:,} records quarantined "
                f"or not loaded and {self.records_unresolved:,} unresolved count as singletons"
            )
        else:
            text += f" in {self.predicted_profiles:,} clusters"
        if self.identified is not None:
            text += f"; on records with a person-level identifier: {self.identified.describe()}"
        return text


def _pair_counts(con: duckdb.DuckDBPyConnection, condition: str) -> tuple[int, int, int, int, int, int]:
    """records, persons, profiles, true pairs, predicted pairs, correct pairs over evaluated records
    matching `condition` (a SQL predicate on evaluated_records)."""
    records, persons, profiles, true_pairs, predicted_pairs, correct_pairs = con.execute(
        f"""
        with
        subset as (select * from evaluated_records where {condition}),
        by_person as (select person_id, count(*) as n from subset group by 1),
        by_profile as (select profile_id, count(*) as n from subset group by 1),
        by_cell as (select person_id, profile_id, count(*) as n from subset group by 1, 2)
        select
            (select count(*) from subset),
            (select count(*) from by_person),
            (select count(*) from by_profile),
            (select coalesce(sum(n * (n - 1) / 2), 0) from by_person),
            (select coalesce(sum(n * (n - 1) / 2), 0) from by_profile),
            (select coalesce(sum(n * (n - 1) / 2), 0) from by_cell)
        """
    ).fetchone()
    return records, persons, profiles, int(true_pairs), int(predicted_pairs), int(correct_pairs)


def evaluate_clustering(con: duckdb.DuckDBPyConnection, truth_csv: Path, worst: int = 5) -> ClusteringQuality:
    if not Path(truth_csv).is_file():
        raise FileNotFoundError(
            f"Truth file {truth_csv} does not exist: expected a CSV with columns "
            "source, table, record_id, person_id (the demo generator writes truth/record_truth.csv)."
        )
    con.execute(
        """
        create or replace temp table evaluated_records as
        with truth as (
            select source || '__' || "table" || ':' || record_id as record_id, person_id
            from read_csv(?, all_varchar = true, header = true)
            where coalesce(person_id, '') <> ''
        ),
        warehouse_records as (
            select record_id from xdm.xdm_identities
            union
            select record_id from xdm.xdm_experience_events
        ),
        identified_records as (
            select distinct identities.record_id
            from xdm.xdm_identities as identities
            inner join identity.identity_namespaces as namespaces
                on namespaces.namespace = identities.namespace and namespaces.is_person_level
        )
        select
            truth.record_id,
            truth.person_id,
            case
                when record_profiles.profile_id is not null then record_profiles.profile_id
                when warehouse_records.record_id is null then 'not_in_warehouse:' || truth.record_id
                else 'unresolved:' || truth.record_id
            end as profile_id,
            warehouse_records.record_id is not null as is_in_warehouse,
            identified_records.record_id is not null as has_person_identifier
        from truth
        left join warehouse_records on warehouse_records.record_id = truth.record_id
        left join identity.record_profiles on record_profiles.record_id = truth.record_id
        left join identified_records on identified_records.record_id = truth.record_id
        """,
        [str(truth_csv)],
    )
    records, persons, profiles, true_pairs, predicted_pairs, correct_pairs = _pair_counts(con, "true")
    identified = _pair_counts(con, "has_person_identifier")
    histogram = con.execute(
        """
        select case when n = 1 then '1' when n <= 5 then '2-5' when n <= 20 then '6-20'
                    when n <= 100 then '21-100' else '>100' end as size_band, count(*) as profiles
        from (select profile_id, count(*) as n from evaluated_records group by 1)
        group by 1 order by min(n)
        """
    ).fetchall()
    overmerges = con.execute(
        """
        select profile_id, count(distinct person_id) as persons
        from evaluated_records group by 1 having persons > 1 order by persons desc, profile_id limit ?
        """,
        [worst],
    ).fetchall()
    undermerges = con.execute(
        """
        select person_id, count(distinct profile_id) as profiles
        from evaluated_records group by 1 having profiles > 1 order by profiles desc, person_id limit ?
        """,
        [worst],
    ).fetchall()
    not_in_warehouse, unresolved = con.execute(
        """select count(*) filter (where profile_id like 'not_in_warehouse:%'),
                  count(*) filter (where profile_id like 'unresolved:%')
           from evaluated_records"""
    ).fetchone()
    has_profiles = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'profiles' and table_name = 'profiles'"
    ).fetchone()[0]
    profiles_built = con.execute(
        "select count(*) from profiles.profiles"
        if has_profiles
        else "select count(distinct profile_id) from identity.identity_graph"
    ).fetchone()[0]
    return ClusteringQuality(
        profiles_built=int(profiles_built),
        records_not_in_warehouse=int(not_in_warehouse),
        records_unresolved=int(unresolved),
        identified=ClusteringQuality(*identified),
        size_histogram=[(band, int(n)) for band, n in histogram],
        records=records,
        true_persons=persons,
        predicted_profiles=profiles,
        true_pairs=int(true_pairs),
        predicted_pairs=int(predicted_pairs),
        correct_pairs=int(correct_pairs),
        worst_overmerges=[(p, int(n)) for p, n in overmerges],
        worst_undermerges=[(p, int(n)) for p, n in undermerges],
    )
