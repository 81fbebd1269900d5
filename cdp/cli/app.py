"""The `cdp` command group and its one error handler: an expected error (the root error of any
package) prints one message and exits with its code; only a bug shows a traceback.

Kept light on imports: the run lock refuses a second writer before the heavy packages load, so a
refused `cdp run` answers in well under a second."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import click

from cdp.errors import CdpError
from cdp.settings import current_paths, export_paths

# The root errors of the other packages, by module: those modules (and their heavy imports) load
# only when a command needs them, and an error of a package that was never imported cannot occur.
OTHER_ROOT_ERRORS = {"activation.errors": "ActivationError", "data_contracts.errors": "ContractError"}


def is_expected(error: BaseException) -> bool:
    if isinstance(error, CdpError):
        return True
    return any(
        module in sys.modules and isinstance(error, getattr(sys.modules[module], name))
        for module, name in OTHER_ROOT_ERRORS.items()
    )


class CdpGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as error:
            if not is_expected(error):
                raise
            click.echo(f"error: {error}", err=True)
            ctx.exit(getattr(error, "exit_code", 2))


@click.group(cls=CdpGroup)
def main() -> None:
    """Customer Data Platform: load, unify, segment and activate customer data on your warehouse."""
    export_paths(current_paths())


def require_landing_folder() -> None:
    """A missing landing folder is a wrong CDP_DATA_DIR, not "no new files": say so before creating anything."""
    paths = current_paths()
    if not paths.landing_dir.is_dir():
        raise CdpError(
            f"no landing folder at {paths.landing_dir}: CDP_DATA_DIR is {paths.data_dir}. Point CDP_DATA_DIR at the "
            "data dir that holds landing/<source>/<table>/ (or run `cdp generate` for demo data)"
        )


def writes_warehouse(command: str, needs_landing: bool = False) -> Callable:
    """Run the command holding the run lock of the build warehouse (cdp/runlock.py): a second writer
    is refused at once, naming the holder's pid, command and start time."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            from cdp.runlock import run_lock

            if needs_landing:
                require_landing_folder()
            with run_lock(current_paths().warehouse, command):
                return function(*args, **kwargs)

        return wrapper

    return decorate
