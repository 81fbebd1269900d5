"""Activation: diff-based reverse-ETL. Sync specs (YAML) name an audience table, a field mapping
and a destination; the engine sends only what changed since the destination last acknowledged,
keeps a ledger of every row operation, and retries failed rows on the next run."""

from activation.destinations import Batch, BatchResult, Destination, RowOperation, build_destination
from activation.diff import SyncPlan, plan_sync
from activation.engine import SyncResult, run_sync
from activation.errors import ActivationError, SyncAborted, SyncFailed, SyncInterrupted
from activation.hooks import register_pre_sync_check
from activation.spec import DestinationSpec, SyncSpec, load_sync_spec, load_sync_specs
from activation.state import ensure_state_tables

__all__ = [
    "ActivationError",
    "Batch",
    "RowOperation",
    "SyncAborted",
    "SyncFailed",
    "SyncInterrupted",
    "BatchResult",
    "Destination",
    "DestinationSpec",
    "SyncPlan",
    "SyncResult",
    "SyncSpec",
    "build_destination",
    "ensure_state_tables",
    "load_sync_spec",
    "load_sync_specs",
    "plan_sync",
    "register_pre_sync_check",
    "run_sync",
]
