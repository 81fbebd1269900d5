"""`cdp serve`: the profile API."""

from __future__ import annotations

import click

from cdp.cli.app import main
from cdp.settings import current_paths


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, help="Server processes (each with its own read pool).")
@click.option("--pool-size", default=8, show_default=True, help="Read-only connections per process.")
def serve(host: str, port: int, workers: int, pool_size: int) -> None:
    """Serve the read-only profile API over the serving store (OpenAPI document at /docs)."""
    import os

    import uvicorn

    from cdp.serving.api import FULL_KEYS_ENV, MASKED_KEYS_ENV, ApiKeys

    keys = ApiKeys.from_env()
    if not keys.full and not keys.masked:
        raise click.UsageError(
            f"no API keys: set {FULL_KEYS_ENV} (sees direct identifiers) and/or "
            f"{MASKED_KEYS_ENV} (sees BI-safe masked fields), comma-separated"
        )
    os.environ["CDP_API_POOL_SIZE"] = str(pool_size)
    store = current_paths().serving_store
    click.echo(f"Serving {store} on http://{host}:{port} (OpenAPI: /openapi.json, docs: /docs)")
    uvicorn.run(
        "cdp.serving.api:app_from_environment", factory=True, host=host, port=port, workers=workers, log_level="warning"
    )
