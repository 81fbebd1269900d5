"""The one root error of audience compilation, and the error of an invalid definition."""

from __future__ import annotations

from cdp.errors import CdpError


class AudienceError(CdpError):
    """Root error of `cdp.audiences`: a definition or the project around it is wrong."""


class AudienceDefinitionError(AudienceError):
    """An audience definition (YAML) breaks a rule: names the file, the path inside it, what was
    found, what is allowed and what to do."""

    def __init__(self, file: str, path: str, found: str, allowed: str, hint: str = "") -> None:
        self.file, self.path, self.found, self.allowed, self.hint = file, path, found, allowed, hint
        where = f"{file}: {path}" if path else file
        message = f"{where}: {found}; allowed: {allowed}"
        super().__init__(message + (f". {hint}" if hint else ""))
