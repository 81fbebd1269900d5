"""The detectable ceiling of `cdp bench-identity --matching`: a true pair that a record of another person
matches at least as well on every field cannot be found without merging that person."""

import polars as pl
import pytest

from tools.bench.identity import _matcher_module, detectable_ceiling, f1_against_ceiling

FIELDS = ("unique_id", "first_name", "last_name", "birth_date", "street", "postcode", "city")


def _records(rows: list[tuple]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=list(FIELDS), orient="row")
    return _matcher_module().prepare_records(frame)


def test_a_namesake_at_least_as_close_makes_a_pair_undetectable_and_lost_records_are_singletons():
    records = _records(
        [
            # Person 1: the second entry keeps only the name.
            ("a1", "anna", "smith", "1980-01-02", "1 main st", "10001", "new york"),
            ("a2", "anna", "smith", None, "9 pine rd", "10009", "new york"),
            # Person 2: a namesake, no birth date, another address: as close to a1 as a2 is.
            ("c1", "anna", "smith", None, "7 oak ave", "10003", "new york"),
            # Person 3: a typo'd first name and transposed date, street missing: still told apart.
            ("d1", "bob", "jones", "1990-05-06", "2 high st", "20001", "boston"),
            ("d2", "bbo", "jones", "1990-06-05", None, "20001", "boston"),
        ]
    )
    truth = pl.DataFrame(
        {
            "record_id": ["a1", "a2", "c1", "d1", "d2", "d3"],  # d3 was quarantined: not among the records
            "person_id": ["p1", "p1", "p2", "p3", "p3", "p3"],
        }
    )
    ceiling, undetectable = detectable_ceiling(records, truth)
    # True pairs: (a1, a2) and three of person 3; detectable: (d1, d2) only.
    assert undetectable == 1
    assert ceiling == pytest.approx(1 / 4)


def test_distinct_fields_leave_every_pair_detectable():
    records = _records(
        [
            ("a1", "anna", "smith", "1980-01-02", "1 main st", "10001", "new york"),
            ("a2", "anna", "smith", "1980-01-02", None, "10001", "new york"),
            ("c1", "anna", "smith", "1971-11-30", "7 oak ave", "10003", "new york"),
        ]
    )
    truth = pl.DataFrame({"record_id": ["a1", "a2", "c1"], "person_id": ["p1", "p1", "p2"]})
    assert detectable_ceiling(records, truth) == (1.0, 0)


def test_f1_against_ceiling_counts_recall_relative_to_what_is_detectable():
    assert f1_against_ceiling(1.0, 0.9, 0.9) == pytest.approx(1.0)
    assert f1_against_ceiling(0.99, 0.5, 1.0) == pytest.approx(2 * 0.99 * 0.5 / 1.49)
