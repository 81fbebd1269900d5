"""The package's one root error, and the few kinds a caller may want to tell apart."""


class ActivationError(Exception):
    """A sync spec or a sync run is not as expected. The message names the object, what was
    expected, what was found, and what to do."""


class SyncAborted(ActivationError):
    """The run stopped before sending anything: the removal guard or a pre-sync hook said no.
    Nothing was sent and the state is unchanged; the run is recorded in activation.sync_runs."""


class SyncInterrupted(ActivationError):
    """SIGTERM or SIGINT stopped the run between batches. Every row the destination acknowledged is
    committed; the run is recorded as `interrupted`; the next run sends the rest."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number  # what a shell reports for a process ended by that signal


class SyncFailed(ActivationError):
    """The run delivered nothing it tried (every row failed or was refused, or the destination was
    down). Recorded as `failed` in activation.sync_runs; the rows are retried by the next run."""
