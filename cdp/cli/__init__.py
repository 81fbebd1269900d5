"""The `cdp` command line: one module per area, each adding its commands to `main`."""

from cdp.cli import activation, bench, contracts, governance, pipeline, predict, profiles, segments, serve, sources  # noqa: F401
from cdp.cli.app import main

__all__ = ["main"]
