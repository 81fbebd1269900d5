"""Data contracts: YAML contracts per source table, row-level validation in polars, and a loader
that puts every row either in raw.<table> or in quarantine.<table> with its reason."""

from data_contracts.contract import Column, Contract, load_contract, load_contracts
from data_contracts.errors import ContractError
from data_contracts.loader import TableLoadReport, ensure_tables, freshness, load_table, replay_quarantine
from data_contracts.validate import ValidationResult, validate

__all__ = [
    "Column",
    "Contract",
    "ContractError",
    "TableLoadReport",
    "ValidationResult",
    "ensure_tables",
    "freshness",
    "load_contract",
    "load_contracts",
    "load_table",
    "replay_quarantine",
    "validate",
]
