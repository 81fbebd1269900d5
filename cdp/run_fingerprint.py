"""Whether a run would find anything new: the fast path of `cdp run` (issue 20; `--no-skip-unchanged` turns it off).

A run is a function of the landing files, the project (dbt models and audiences through the manifest,
contracts, sync specs, policies, campaigns, the Python code), the as-of day and the warehouse as the last
run left it. The fingerprint of all of them is written after every successful run whose syncs delivered
everything; a run that finds the same fingerprint has nothing to build, score, sync or publish.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cdp.settings import PROJECT_ROOT, Paths, as_of_instant

# The Python packages whose code decides what a run computes.
CODE_PACKAGES = ("cdp", "orchestration", "activation", "data_contracts")
FINGERPRINT_FILE = "last_run.fingerprint.json"


@dataclass(frozen=True)
class RunFingerprint:
    digest: str
    run_id: str


def _stat_line(path: Path, root: Path) -> str:
    stat = path.stat()
    return f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}"


def _files(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted({path for pattern in patterns for path in root.rglob(pattern) if path.is_file()})


def project_inputs() -> list[tuple[Path, tuple[str, ...]]]:
    """(folder, file patterns) of everything but the data that a run's result depends on."""
    from activation.spec import syncs_dir
    from cdp.dbt import MANIFEST_PATH
    from data_contracts.contract import CONTRACTS_DIR

    folders = [
        (MANIFEST_PATH.parent, ("manifest.json",)),
        (Path(os.environ.get("CDP_CONTRACTS_DIR") or CONTRACTS_DIR), ("*.yml",)),
        (syncs_dir(), ("*.yml",)),
        (Path(os.environ.get("CDP_POLICIES_DIR") or PROJECT_ROOT / "activation" / "policies"), ("*.yml",)),
        (Path(os.environ.get("CDP_CAMPAIGNS_DIR") or PROJECT_ROOT / "dbt_project" / "campaigns"), ("*.yml",)),
    ]
    folders += [(PROJECT_ROOT / package, ("*.py",)) for package in CODE_PACKAGES]
    return folders


def current_digest(paths: Paths) -> str:
    """The fingerprint of what a run now would start from (the manifest must be prepared first)."""
    digest = hashlib.sha256()
    digest.update(f"as_of={as_of_instant().isoformat()}\n".encode())
    for path in _files(paths.landing_dir, ("*",)):
        digest.update(f"landing {_stat_line(path, paths.landing_dir)}\n".encode())
    for folder, patterns in project_inputs():
        for path in _files(folder, patterns):
            digest.update(f"project {folder.name} {_stat_line(path, folder)}\n".encode())
    for path in (paths.warehouse, paths.serving_store):
        digest.update(f"state {path.name}:{_stat_line(path, path.parent) if path.exists() else 'missing'}\n".encode())
    return digest.hexdigest()


def _fingerprint_path(paths: Paths) -> Path:
    return paths.data_dir / "logs" / FINGERPRINT_FILE


def unchanged_since_last_run(paths: Paths) -> RunFingerprint | None:
    """The last run, when nothing a run depends on changed since it ended; else None."""
    try:
        stored = json.loads(_fingerprint_path(paths).read_text())
    except (OSError, ValueError):
        return None
    if stored.get("digest") != current_digest(paths):
        return None
    return RunFingerprint(stored["digest"], stored["run_id"])


def remember_run(paths: Paths, run_id: str, complete: bool) -> None:
    """After a run: its fingerprint when it succeeded and delivered every row it tried (else forget it,
    so that the next run retries what is pending)."""
    target = _fingerprint_path(paths)
    if not complete:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps({"digest": current_digest(paths), "run_id": run_id}))
    temporary.replace(target)


def syncs_delivered_everything(con, run_id: str) -> bool:
    """No sync of the run left rows failed or unsent (those wait for the next run's retry)."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'activation' and table_name = 'sync_runs'"
    ).fetchone()[0]
    if not exists:
        return True
    pending = con.execute(
        "select count(*) from activation.sync_runs where run_id = ? "
        "and (coalesce(failed, 0) > 0 or coalesce(not_sent, 0) > 0 or status <> 'succeeded')",
        [run_id],
    ).fetchone()[0]
    return pending == 0
