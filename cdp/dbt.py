"""The dbt project on disk: where it is, which dbt runs it, and a manifest kept fresh.

Plain Python (no Dagster): the CLI, publication, governance and the profile API read the manifest
through here; orchestration/dbt.py wraps the same project for Dagster."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from cdp.errors import CdpError
from cdp.settings import DBT_PROJECT_DIR

# The dbt installed beside this Python, so the CLI works from a venv that is not activated.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))
TARGET_DIR = DBT_PROJECT_DIR / "target"
MANIFEST_PATH = TARGET_DIR / "manifest.json"
_SOURCE_FILES = ("*.sql", "*.py", "*.yml", "*.csv")


class DbtError(CdpError):
    """dbt could not parse or compile the project."""


def manifest_is_stale() -> bool:
    if not MANIFEST_PATH.exists():
        return True
    built_at = MANIFEST_PATH.stat().st_mtime
    return any(
        path.stat().st_mtime > built_at
        for pattern in _SOURCE_FILES
        for path in DBT_PROJECT_DIR.rglob(pattern)
        if "target" not in path.parts and "logs" not in path.parts
    )


def dbt_command(*args: str) -> list[str]:
    return [DBT_EXECUTABLE, *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]


_prepared_in_this_process = False


def prepare_manifest(broken_audiences: dict | None = None) -> Path:
    """Compile the YAML audiences into dbt models (an invalid one gets no model: its error goes into
    `broken_audiences` when given), the source declarations into the XDM models'
    dependencies and the trait columns into the trait catalogue macro (files change only when a
    definition did), then
    parse the dbt project when its manifest is missing or older than a model, macro or seed, so
    `cdp`, tests and `dagster dev` always see the current project.

    Once per process (a run asked for it ten times: every label refresh read the manifest through
    here, ~1 s each): a process that changes a definition afterwards is a new `cdp` command."""
    global _prepared_in_this_process
    if _prepared_in_this_process and MANIFEST_PATH.exists():
        return MANIFEST_PATH
    from cdp.audiences import write_audiences
    from cdp.campaigns import write_campaign_catalogue
    from cdp.sources import write_source_refs
    from cdp.traits import write_trait_catalogue

    write_audiences(broken={} if broken_audiences is None else broken_audiences)  # Dagster shows it as failing
    write_source_refs()  # the staging models each XDM model refs, from their cdp meta (checked)
    write_trait_catalogue()  # the trait columns of profile_traits, for the trait macros and unit tests
    write_campaign_catalogue()  # dbt_project/campaigns/*.yml, checked, for the analytics models
    if manifest_is_stale():
        result = subprocess.run(dbt_command("parse", "--quiet"), cwd=DBT_PROJECT_DIR, capture_output=True, text=True)
        if result.returncode != 0:
            raise DbtError(
                f"`dbt parse` of {DBT_PROJECT_DIR} failed (exit {result.returncode}): "
                f"{(result.stdout + result.stderr).strip()[-3000:]}\nFix the model or YAML it names, "
                "then run again."
            )
    _prepared_in_this_process = True
    return MANIFEST_PATH


PARTIAL_PARSE_FILE = "partial_parse.msgpack"
RUN_TARGETS_KEPT = 3


def run_target_path(run_dir: Path, run_id: str) -> Path:
    """The dbt target folder of one pipeline run, `<run_dir>/<run id>`, which every dbt invocation of
    the run shares (they run one after another), so each parses only what changed since the one before:
    dbt keeps its partial-parsing state (partial_parse.msgpack) in its target folder, and a fresh folder
    per invocation (dagster-dbt's default) made each of a run's four invocations parse the whole project.
    A new run's folder starts from the state of the newest earlier run (else of `dbt parse` in
    dbt_project/target); dbt re-parses in full by itself when that state does not fit (another
    warehouse path, another dbt version). Older runs' folders are removed but the newest few."""
    target = run_dir / run_id
    if target.exists():
        return target
    earlier = sorted(
        (path for path in run_dir.glob("*/") if path.is_dir()), key=lambda path: path.stat().st_mtime, reverse=True
    )
    target.mkdir(parents=True)
    for state in [*(path / PARTIAL_PARSE_FILE for path in earlier), TARGET_DIR / PARTIAL_PARSE_FILE]:
        try:
            shutil.copyfile(state, target / PARTIAL_PARSE_FILE)
            break
        except OSError:  # none there (a failed run), or removed meanwhile: try the next
            continue
    for old in earlier[RUN_TARGETS_KEPT - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
    return target


@lru_cache(maxsize=4)
def _read_manifest(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())


def load_manifest(prepare: bool = True) -> dict:
    """The dbt manifest (parsed first when missing or stale, unless `prepare` is false)."""
    if prepare:
        prepare_manifest()
    elif not MANIFEST_PATH.exists():
        raise DbtError(f"no dbt manifest at {MANIFEST_PATH}: run `cdp run` (or `dbt parse`) first")
    return _read_manifest(str(MANIFEST_PATH), MANIFEST_PATH.stat().st_mtime)
