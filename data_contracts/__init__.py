"""Data contracts: YAML contracts per source table, row-level validation in polars, and a loader
that puts every row either in raw.<table> or in quarantine.<table> with its reason."""

from data_contracts.contract import Column, Contract, load_contract, load_contracts
from data_contracts.errors import ContractError, UnreadableFile
from data_contracts.loader import (
    FileFailure,
    TableLoadReport,
    accept_file,
    ensure_tables,
    freshness,
    load_table,
    outstanding_failures,
    replay_quarantine,
)
from data_contracts.validate import ValidationResult, validate

__all__ = [
    "Column",
    "Contract",
    "ContractError",
    "FileFailure",
    "TableLoadReport",
    "UnreadableFile",
    "ValidationResult",
    "accept_file",
    "ensure_tables",
    "freshness",
    "load_contract",
    "load_contracts",
    "load_table",
    "outstanding_failures",
    "replay_quarantine",
    "validate",
]
