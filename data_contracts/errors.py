"""The package's one root error, and the one kind of it the loader handles itself."""

from __future__ import annotations


class ContractError(Exception):
    """A contract, or a file checked against one, is not as expected. The message names the
    object, what was expected, what was found, and what to do."""


class UnreadableFile(ContractError):
    """A landing file whose rows cannot be read at all (corrupt, truncated, of another format than its
    name says, or with values no contract column can hold). The loader moves it aside with this reason."""

    def __init__(self, path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
