"""A BI-style reader, run as its own process by test_serving: query the serving store in a loop until
a stop file appears, and check every answer against the publication record it came with.

Odd iterations connect through SQLAlchemy + duckdb-engine with the README's connection string (the
way Superset and similar tools connect); even ones through the duckdb client. Writes a JSON report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb
from sqlalchemy import create_engine, text

READ_MODEL_COUNTS = "profile_read_model."


def read_once(store: Path, through_sqlalchemy: bool) -> tuple[str, list[str]]:
    """Returns the run id read and the mismatches between its recorded and actual row counts."""
    if through_sqlalchemy:
        engine = create_engine(f"duckdb:///{store}?access_mode=read_only")
        try:
            with engine.connect() as connection:

                def query(sql: str):
                    return connection.execute(text(sql)).fetchall()

                return _check(query)
        finally:
            engine.dispose()
    with duckdb.connect(str(store), read_only=True) as connection:
        return _check(lambda sql: connection.execute(sql).fetchall())


def _check(query) -> tuple[str, list[str]]:
    run_id, counts = query("select run_id, row_counts from serving.publications order by published_at desc limit 1")[0]
    counts = counts if isinstance(counts, dict) else json.loads(counts)  # duckdb-engine parses JSON itself
    mismatches = []
    for table, expected in counts.items():
        if table.startswith(READ_MODEL_COUNTS):
            continue  # the API's read model, a SQLite file beside the store (test_serving checks its counts)
        actual = query(f"select count(*) from {table}")[0][0]
        if actual != expected:
            mismatches.append(f"{table}: publication {run_id} recorded {expected} rows, read {actual}")
    bi_profiles = query("select count(*) from bi.profiles")[0][0]
    if bi_profiles != counts["profiles.profiles"]:
        mismatches.append(f"bi.profiles: {bi_profiles} rows, profiles.profiles recorded otherwise")
    return run_id, mismatches


def write_atomically(path: Path, document: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document))
    partial.replace(path)


def main(store: Path, stop_file: Path, report: Path) -> None:
    """Reads until the stop file appears; `<report>.progress` says which runs it has read so far,
    so the test can wait for reads of the new publication instead of sleeping."""
    iterations, errors, runs_seen = 0, [], {}
    progress = report.with_name(report.name + ".progress")
    while not stop_file.exists():
        try:
            run_id, mismatches = read_once(store, through_sqlalchemy=iterations % 2 == 1)
            runs_seen[run_id] = runs_seen.get(run_id, 0) + 1
            errors.extend(mismatches)
        except Exception as error:  # every failure is reported, the loop goes on
            errors.append(f"{type(error).__name__}: {error}")
        iterations += 1
        write_atomically(progress, {"runs_seen": runs_seen})
        time.sleep(0.01)
    write_atomically(
        report, {"iterations": iterations, "errors": errors[:50], "error_count": len(errors), "runs_seen": runs_seen}
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
