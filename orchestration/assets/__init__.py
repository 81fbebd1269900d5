"""Dagster assets: source loads, dbt models, audience syncs."""
