"""The `cdp` command group and its one error handler: an expected error (the root error of any
package) prints one message and exits with its code; only a bug shows a traceback."""

from __future__ import annotations

import click

from activation.errors import ActivationError
from cdp.errors import CdpError
from cdp.settings import current_paths, export_paths
from data_contracts.errors import ContractError

EXPECTED_ERRORS = (CdpError, ActivationError, ContractError)


class CdpGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EXPECTED_ERRORS as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(getattr(error, "exit_code", 2))


@click.group(cls=CdpGroup)
def main() -> None:
    """Customer Data Platform: load, unify, segment and activate customer data on your warehouse."""
    export_paths(current_paths())
