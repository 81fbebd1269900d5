"""`cdp identity evaluate` counts every record of the truth: one its contract quarantined (not in the
warehouse) and one the graph left unresolved are singletons, as a user gets them; the profile count is
the profiles built, not profiles plus singletons."""

from __future__ import annotations

import duckdb

from cdp.identity.evaluation import evaluate_clustering


def _warehouse(path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    for schema in ("xdm", "identity", "profiles"):
        con.execute(f"create schema {schema}")
    con.execute("""create table xdm.xdm_identities as select * from (values
        ('crm__contacts:1', 'crm_id', 'C1'), ('crm__contacts:2', 'email', 'a@x.example'),
        ('crm__contacts:4', 'crm_id', 'C4'), ('crm__contacts:5', 'cookie_id', 'junk')
    ) as t(record_id, namespace, identity_value)""")
    con.execute("create table xdm.xdm_experience_events (record_id varchar)")
    con.execute("""create table identity.identity_namespaces as select * from (values
        ('crm_id', true), ('email', true), ('cookie_id', false)) as t(namespace, is_person_level)""")
    con.execute("""create table identity.record_profiles as select * from (values
        ('crm__contacts:1', 'prf_1'), ('crm__contacts:2', 'prf_1'), ('crm__contacts:4', 'prf_2')
    ) as t(record_id, profile_id)""")
    con.execute("create table profiles.profiles as select * from (values ('prf_1'), ('prf_2')) as t(profile_id)")
    return con


def test_quarantined_and_unresolved_records_count_as_singletons(tmp_path):
    truth = tmp_path / "truth.csv"
    # P1 has three records: two resolved to prf_1, one quarantined by its contract (record 3 never
    # reached the warehouse). P3's only record has no linkable identifier.
    truth.write_text(
        "source,table,record_id,person_id\n"
        "crm,contacts,1,P1\ncrm,contacts,2,P1\ncrm,contacts,3,P1\ncrm,contacts,4,P2\ncrm,contacts,5,P3\n"
    )
    with _warehouse(tmp_path / "w.duckdb") as con:
        quality = evaluate_clustering(con, truth)
    assert quality.records == 5
    assert (quality.true_pairs, quality.predicted_pairs, quality.correct_pairs) == (3, 1, 1)
    assert quality.recall == 1 / 3
    assert quality.profiles_built == 2
    assert (quality.records_not_in_warehouse, quality.records_unresolved) == (1, 1)
    assert "2 profiles built; 1 records quarantined or not loaded and 1 unresolved" in quality.describe()
