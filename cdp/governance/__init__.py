"""Governance: data-usage labels of every model column, policy checks, privacy requests (access and
erasure), the suppression list and the audit log. Plain Python (no Dagster imports)."""
