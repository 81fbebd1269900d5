"""The `cdp` command line: one module per area, each adding its commands to `main`."""

from cdp.cli import (  # noqa: F401
    activation,
    bench,
    campaigns,
    contracts,
    governance,
    operations,
    pipeline,
    predict,
    profiles,
    segments,
    serve,
    sources,
)
from cdp.cli.app import main

__all__ = ["main"]
