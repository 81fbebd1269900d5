"""A run's dbt invocations share one target folder that starts from the newest earlier run's parse state,
so dbt parses only what changed (issue 20: one dbt parse per run); old runs' folders do not pile up.
That dbt then parses partially is checked on the shared pipeline runs (tests/e2e/test_pipeline.py)."""

from __future__ import annotations

import os

from cdp.dbt import PARTIAL_PARSE_FILE, RUN_TARGETS_KEPT, TARGET_DIR, run_target_path


def _age(path, seconds_ago: float) -> None:
    stamp = path.stat().st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))


def test_a_run_starts_from_the_newest_parse_state_and_old_runs_are_removed(tmp_path):
    runs = tmp_path / "dbt-target"
    for number, age in ((1, 300), (2, 200), (3, 100)):
        folder = runs / f"run-{number}"
        folder.mkdir(parents=True)
        (folder / PARTIAL_PARSE_FILE).write_bytes(f"state of run {number}".encode())
        _age(folder, age)
    target = run_target_path(runs, "run-4")
    assert target == runs / "run-4"
    assert (target / PARTIAL_PARSE_FILE).read_bytes() == b"state of run 3"
    # The newest runs are kept (this one included), the oldest removed.
    assert sorted(path.name for path in runs.iterdir()) == ["run-2", "run-3", "run-4"]
    assert len(list(runs.iterdir())) == RUN_TARGETS_KEPT
    # The same run asks again (its next dbt invocation): same folder, its own state untouched.
    (target / PARTIAL_PARSE_FILE).write_bytes(b"state of run 4")
    assert run_target_path(runs, "run-4") == target
    assert (target / PARTIAL_PARSE_FILE).read_bytes() == b"state of run 4"


def test_a_first_run_starts_from_the_projects_parse_state_or_from_nothing(tmp_path):
    target = run_target_path(tmp_path / "dbt-target", "first")
    project_state = TARGET_DIR / PARTIAL_PARSE_FILE
    if project_state.exists():
        assert (target / PARTIAL_PARSE_FILE).read_bytes() == project_state.read_bytes()
    else:
        assert not (target / PARTIAL_PARSE_FILE).exists()
