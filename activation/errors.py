"""The package's one root error, and the few kinds a caller may want to tell apart."""


class ActivationError(Exception):
    """A sync spec or a sync run is not as expected. The message names the object, what was
    expected, what was found, and what to do."""


class SyncAborted(ActivationError):
    """The run stopped before sending anything: the removal guard or a pre-sync hook said no.
    Nothing was sent and the state is unchanged; the run is recorded in activation.sync_runs."""
