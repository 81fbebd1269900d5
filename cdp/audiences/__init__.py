"""Audiences declared in YAML, compiled to dbt models (see README, Audiences)."""

from cdp.audiences.definition import AudienceDefinition, parse_definition
from cdp.audiences.errors import AudienceDefinitionError, AudienceError
from cdp.audiences.project import (
    Audience,
    AudienceProject,
    broken_audiences,
    column_problems,
    compile_audiences,
    list_audiences,
    stale_files,
    write_audiences,
)

__all__ = [
    "Audience",
    "AudienceDefinition",
    "AudienceDefinitionError",
    "AudienceError",
    "AudienceProject",
    "broken_audiences",
    "column_problems",
    "compile_audiences",
    "list_audiences",
    "parse_definition",
    "stale_files",
    "write_audiences",
]
