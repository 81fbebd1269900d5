"""The `cdp` command line: one module per area, each adding its commands to `main`."""

import cdp.cli.campaigns  # noqa: F401  (cdp campaigns ...)
from cdp.cli import activation, bench, contracts, governance, pipeline, predict, profiles, segments, serve, sources  # noqa: F401
from cdp.cli.app import main

__all__ = ["main"]
