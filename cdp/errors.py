"""The application's one root error. Every expected failure of the `cdp` package (a bad audience,
a missing warehouse, a wrong encryption key, an unknown identifier, ...) is a CdpError whose
message names the object, what was expected, what was found and what to do; the CLI prints it as
one line and exits 2, never with a traceback. activation and data_contracts keep their own roots
(ActivationError, ContractError), which the CLI treats the same way."""

from __future__ import annotations


class CdpError(Exception):
    """An expected failure: the message says what failed and what to do."""

    exit_code = 2
