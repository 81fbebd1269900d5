"""The package's one root error."""


class ActivationError(Exception):
    """A sync spec or a sync run is not as expected. The message names the object, what was
    expected, what was found, and what to do."""
