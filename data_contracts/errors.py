"""The package's one root error."""


class ContractError(Exception):
    """A contract, or a file checked against one, is not as expected. The message names the
    object, what was expected, what was found, and what to do."""
