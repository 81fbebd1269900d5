"""Sync specs: YAML files in activation/syncs/, validated when loaded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from activation.errors import ActivationError

SYNCS_DIR = Path(__file__).resolve().parent / "syncs"
MODES = ("mirror", "upsert")
SPEC_KEYS = ("name", "description", "audience", "primary_key", "mode", "fields", "destination", "marketing_actions")
DESTINATION_KEYS = {"file": ("type", "format", "path")}
FILE_FORMATS = ("csv", "jsonl", "parquet")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DestinationSpec:
    type: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncSpec:
    name: str
    audience: str  # schema.table in the warehouse
    primary_key: str  # audience column whose value identifies a row at the destination
    fields: dict[str, str]  # destination field -> audience column
    destination: DestinationSpec
    mode: str = "mirror"
    description: str = ""
    path: Path | None = None
    # Data-usage policy: what the destination does with the data (activation/policies.py vocabulary).
    marketing_actions: tuple[str, ...] = ()


def _fail(path: Path, problem: str, todo: str) -> ActivationError:
    return ActivationError(f"sync spec {path}: {problem}. {todo}")


def load_sync_spec(path: str | Path) -> SyncSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise _fail(path, f"is not valid YAML ({error})", "Fix the syntax.") from error
    if not isinstance(data, dict):
        raise _fail(path, f"expected a mapping with keys {', '.join(SPEC_KEYS)}, found {type(data).__name__}",
                    "See activation/syncs/ for examples.")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(SPEC_KEYS)}",
                    "Remove or rename them.")
    missing = [key for key in ("name", "audience", "primary_key", "fields", "destination") if key not in data]
    if missing:
        raise _fail(path, f"missing key(s) {', '.join(missing)}", "Add them.")
    audience = str(data["audience"])
    if len(audience.split(".")) != 2 or not all(IDENTIFIER.match(part) for part in audience.split(".")):
        raise _fail(path, f"audience is {audience!r}; expected schema.table such as segments.seg_high_value",
                    "Name the audience table with its schema.")
    mode = data.get("mode", "mirror")
    if mode not in MODES:
        raise _fail(path, f"mode is {mode!r}; expected one of {', '.join(MODES)}", "Pick a supported mode.")
    fields = data["fields"]
    if not isinstance(fields, dict) or not fields:
        raise _fail(path, f"fields must map destination field -> audience column; found {fields!r}",
                    "List at least one field.")
    for target, column in fields.items():
        if not IDENTIFIER.match(str(target)) or not IDENTIFIER.match(str(column)):
            raise _fail(path, f"field {target!r}: {column!r} is not a plain column name",
                        "Use letters, digits and underscores only.")
    primary_key = str(data["primary_key"])
    if primary_key not in fields.values():
        raise _fail(path, f"primary_key {primary_key!r} is not among the mapped audience columns "
                          f"({', '.join(fields.values())})", "Map the primary key column to a destination field.")
    destination = data["destination"]
    if not isinstance(destination, dict) or destination.get("type") not in DESTINATION_KEYS:
        raise _fail(path, f"destination type is {destination.get('type') if isinstance(destination, dict) else destination!r}; "
                          f"expected one of {', '.join(DESTINATION_KEYS)}", "Pick a supported destination type.")
    allowed = DESTINATION_KEYS[destination["type"]]
    unknown = sorted(set(destination) - set(allowed))
    if unknown:
        raise _fail(path, f"destination has unknown key(s) {', '.join(unknown)}; a {destination['type']} destination "
                          f"takes {', '.join(allowed)}", "Remove or rename them.")
    if destination["type"] == "file":
        if destination.get("format") not in FILE_FORMATS:
            raise _fail(path, f"file destination format is {destination.get('format')!r}; expected one of "
                              f"{', '.join(FILE_FORMATS)}", "Pick a supported format.")
        if not destination.get("path"):
            raise _fail(path, "file destination has no path", "Give the directory the files go to.")
    actions = data.get("marketing_actions") or []
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise _fail(path, f"marketing_actions must be a list of strings; found {actions!r}",
                    "List what the destination does, e.g. [email_targeting, export_to_third_party].")
    from activation.policies import PolicyError, check_marketing_action

    try:
        actions = [check_marketing_action(a, f"sync spec {path}: marketing_actions") for a in actions]
    except PolicyError as error:
        raise ActivationError(str(error)) from None
    return SyncSpec(
        name=str(data["name"]),
        marketing_actions=tuple(actions),
        audience=audience,
        primary_key=primary_key,
        fields={str(k): str(v) for k, v in fields.items()},
        destination=DestinationSpec(type=destination["type"],
                                    settings={k: v for k, v in destination.items() if k != "type"}),
        mode=mode,
        description=str(data.get("description", "")),
        path=path,
    )


def load_sync_specs(directory: str | Path | None = None) -> dict[str, SyncSpec]:
    directory = Path(directory) if directory else SYNCS_DIR
    specs: dict[str, SyncSpec] = {}
    for path in sorted(directory.glob("*.yml")):
        spec = load_sync_spec(path)
        if spec.name in specs:
            raise _fail(path, f"declares name {spec.name!r}, already used by {specs[spec.name].path}",
                        "Give every sync a unique name.")
        specs[spec.name] = spec
    return specs
