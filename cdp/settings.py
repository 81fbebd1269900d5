"""Where the platform keeps its files. Every path can be moved with an environment variable."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


@dataclass(frozen=True)
class Paths:
    data_dir: Path
    warehouse: Path
    serving_store: Path

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def truth_dir(self) -> Path:
        """Ground truth written by the demo generator; the pipeline never reads it."""
        return self.data_dir / "truth"

    @property
    def destinations_dir(self) -> Path:
        """Base directory that relative destination paths of sync specs resolve against."""
        return self.data_dir


def current_paths() -> Paths:
    """Paths from CDP_DATA_DIR (default: data/ in the project), CDP_WAREHOUSE (default:
    warehouse.duckdb in the data dir; the build warehouse a run writes) and CDP_SERVING_STORE
    (default: serving/published.duckdb in the data dir; what BI tools and `cdp serve` read)."""
    data_dir = Path(os.environ.get("CDP_DATA_DIR") or PROJECT_ROOT / "data").resolve()
    warehouse = Path(os.environ.get("CDP_WAREHOUSE") or data_dir / "warehouse.duckdb").resolve()
    serving_store = Path(os.environ.get("CDP_SERVING_STORE") or data_dir / "serving" / "published.duckdb").resolve()
    return Paths(data_dir=data_dir, warehouse=warehouse, serving_store=serving_store)


def export_paths(paths: Paths) -> None:
    """Make the paths visible to subprocesses (dbt reads CDP_WAREHOUSE from its profile)."""
    os.environ["CDP_DATA_DIR"] = str(paths.data_dir)
    os.environ["CDP_WAREHOUSE"] = str(paths.warehouse)
    os.environ["CDP_SERVING_STORE"] = str(paths.serving_store)


def as_of_instant() -> datetime.datetime:
    """The instant time windows are measured from (same rule as dbt's as_of_timestamp macro): the end
    of day CDP_AS_OF (YYYY-MM-DD) if set, else the end of today, UTC, as a naive UTC datetime."""
    day = os.environ.get("CDP_AS_OF")
    date = datetime.date.fromisoformat(day) if day else datetime.datetime.now(datetime.UTC).date()
    return datetime.datetime.combine(date + datetime.timedelta(days=1), datetime.time())


DAGSTER_YAML = """\
# Written by cdp (cdp/settings.py) when this folder was created; edit freely.
# One run at a time writes the build warehouse: Dagster queues a second run tagged cdp/warehouse
# until the first ends (the CLI and in-process runs take the file lock <warehouse>.run-lock as well).
concurrency:
  runs:
    tag_concurrency_limits:
      - key: cdp/warehouse
        limit: 1
telemetry:
  enabled: false
"""


def dagster_home(paths: Paths) -> Path:
    """DAGSTER_HOME, default dagster/ in the data dir: `cdp run` records its runs there, and
    `cdp dagster` (or `make dagster`) opens the UI on the same folder, so the UI shows every run."""
    return Path(os.environ.get("DAGSTER_HOME") or paths.data_dir / "dagster").resolve()


def export_dagster_home(paths: Paths) -> Path:
    """Set DAGSTER_HOME (when unset) and give a new home the warehouse's run concurrency limit."""
    home = dagster_home(paths)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
