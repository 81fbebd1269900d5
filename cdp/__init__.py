"""cdp: the application around the pipeline (the `cdp` CLI, publication and the profile API,
governance and privacy, the audience compiler, predictive models, identity tools, the demo
generator). Plain Python: only orchestration/ imports Dagster (docs/architecture.md)."""
