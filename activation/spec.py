"""Sync specs: YAML files in activation/syncs/ (or CDP_SYNCS_DIR), validated when loaded."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from activation.errors import ActivationError

SYNCS_DIR = Path(__file__).resolve().parent / "syncs"
# mirror: adds, changes and removes rows this sync sent; upsert: never removes; membership: add to /
# remove from an audience list (ad platforms); snapshot: a full file of the audience every run.
MODES = ("mirror", "upsert", "membership", "snapshot")
SPEC_KEYS = (
    "name",
    "description",
    "audience",
    "primary_key",
    "mode",
    "fields",
    "identifiers",
    "destination",
    "consents",
    "consent_key",
    "marketing_actions",
    "schedule",
    "guard",
    "send_holdout",
)
HTTP_KEYS = ("batch_size", "timeout_s", "max_attempts", "backoff_s", "max_backoff_s", "rate_limit_per_s")
# When a run stops early (activation/engine.py): after this many consecutive batches that failed whole
# (the destination looks down), or once the run has lasted deadline_s seconds. Unsent rows wait for the next run.
RUN_KEYS = ("max_consecutive_failed_batches", "deadline_s")
DESTINATION_KEYS: dict[str, tuple[str, ...]] = {
    "file": ("type", "format", "path"),
    "webhook": ("type", "url", "url_env", "local_inbox", "secret_env", *HTTP_KEYS, *RUN_KEYS),
    "postgres": ("type", "dsn_env", "table", "batch_size", *RUN_KEYS),
    "ad_audience": ("type", "url", "url_env", "audience_id", "token_env", *HTTP_KEYS, *RUN_KEYS),
    "email": ("type", "url", "url_env", "list_id", "token_env", "email_field", *HTTP_KEYS, *RUN_KEYS),
}
MODES_BY_DESTINATION = {
    "file": ("mirror", "upsert", "snapshot"),
    "webhook": ("mirror", "upsert"),
    "postgres": ("mirror", "upsert"),
    "ad_audience": ("membership",),
    "email": ("mirror", "upsert"),
}
FILE_FORMATS = ("csv", "jsonl", "parquet")
IDENTIFIER_TYPES = ("email", "phone")
HASHES = ("sha256", "none")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GUARD_DEFAULT_MAX_REMOVE_SHARE = 0.5


@dataclass(frozen=True)
class DestinationSpec:
    type: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IdentifierSpec:
    """An identifier sent to the destination: normalized (email trimmed + lower-cased, phone E.164),
    then SHA-256 hashed unless hash is 'none'."""

    column: str
    type: str
    hash: str = "sha256"


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
    identifiers: dict[str, IdentifierSpec] = field(default_factory=dict)  # destination field -> identifier
    consents: tuple[str, ...] = ()  # purposes every sent row needs consent_value 'y' for
    consent_key: str = "profile_id"  # audience column joined to profiles.profile_consents.profile_id
    marketing_actions: tuple[str, ...] = ()
    schedule: str | None = None  # cron; None: with the pipeline
    max_remove_share: float = GUARD_DEFAULT_MAX_REMOVE_SHARE
    # Audiences with splits: members of a holdout split (is_holdout) are not sent unless this is true;
    # they are recorded in the ledger as held_out (campaign analytics compare them with those sent).
    send_holdout: bool = False

    @property
    def key_field(self) -> str:
        return next(target for target, column in self.fields.items() if column == self.primary_key)

    def setting(self, key: str, default: Any = None) -> Any:
        return self.destination.settings.get(key, default)

    def url(self) -> str:
        """The destination's base URL: `url`, or the environment variable `url_env` names."""
        if self.setting("url"):
            return str(self.setting("url"))
        variable = self.setting("url_env")
        if not os.environ.get(str(variable)):
            raise ActivationError(
                f"sync {self.name}: environment variable {variable} (destination url_env) is not "
                f"set or empty. Export {variable} with the API's base URL."
            )
        return os.environ[str(variable)]

    def secret(self, setting_key: str, *, required: bool = True) -> str | None:
        """The value of the environment variable a setting names (secrets never sit in specs)."""
        variable = self.destination.settings.get(setting_key)
        if not variable:
            if required:
                raise ActivationError(
                    f"sync {self.name}: destination setting {setting_key} is missing; expected the "
                    f"name of an environment variable. Add `{setting_key}: VAR_NAME` to {self.path}."
                )
            return None
        value = os.environ.get(str(variable))
        if not value and required:
            raise ActivationError(
                f"sync {self.name}: environment variable {variable} (destination {setting_key}) is "
                f"not set or empty. Export {variable} before running the sync."
            )
        return value or None


def _fail(path: Path, problem: str, todo: str) -> ActivationError:
    return ActivationError(f"sync spec {path}: {problem}. {todo}")


def _string_list(path: Path, data: dict, key: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) and IDENTIFIER.match(item) for item in value):
        raise _fail(path, f"{key} must be a list of names; found {value!r}", f"Write e.g. `{key}: [marketing_email]`.")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise _fail(
                path,
                f"{key} has unknown value(s) {', '.join(unknown)}; expected some of {', '.join(allowed)}",
                "Use the declared vocabulary (activation/spec.py MARKETING_ACTIONS).",
            )
    return tuple(value)


def _marketing_actions(path: Path, data: dict) -> tuple[str, ...]:
    """The marketing actions the destination performs, in the data-usage policies' vocabulary
    (activation/policies.py): unknown actions are refused, so a typo cannot slip past a policy."""
    from activation.policies import PolicyError, check_marketing_action

    value = data.get("marketing_actions") or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(
            path,
            f"marketing_actions must be a list of names; found {value!r}",
            "Write e.g. `marketing_actions: [email_targeting]`.",
        )
    try:
        return tuple(check_marketing_action(action, f"sync spec {path}") for action in value)
    except PolicyError as error:
        raise ActivationError(str(error)) from None


def _identifiers(path: Path, data: dict) -> dict[str, IdentifierSpec]:
    raw = data.get("identifiers") or {}
    if not isinstance(raw, dict):
        raise _fail(
            path,
            f"identifiers must map destination field -> {{column, type, hash}}; found {raw!r}",
            "See activation/syncs/ for an example.",
        )
    identifiers = {}
    for target, item in raw.items():
        if (
            not IDENTIFIER.match(str(target))
            or not isinstance(item, dict)
            or not IDENTIFIER.match(str(item.get("column", "")))
        ):
            raise _fail(
                path,
                f"identifier {target!r} must be {{column: <audience column>, type: email|phone, "
                f"hash: sha256|none}}; found {item!r}",
                "Fix the identifier.",
            )
        if item.get("type") not in IDENTIFIER_TYPES:
            raise _fail(
                path,
                f"identifier {target!r} has type {item.get('type')!r}; expected one of {', '.join(IDENTIFIER_TYPES)}",
                "Pick a supported identifier type.",
            )
        hash_name = item.get("hash", "sha256")
        if hash_name not in HASHES:
            raise _fail(
                path,
                f"identifier {target!r} has hash {hash_name!r}; expected one of {', '.join(HASHES)}",
                "Use sha256 (what ad platforms expect) or none.",
            )
        identifiers[str(target)] = IdentifierSpec(column=str(item["column"]), type=item["type"], hash=hash_name)
    return identifiers


def _check_destination(path: Path, destination: Any, mode: str) -> None:
    if not isinstance(destination, dict) or destination.get("type") not in DESTINATION_KEYS:
        found = destination.get("type") if isinstance(destination, dict) else destination
        raise _fail(
            path,
            f"destination type is {found!r}; expected one of {', '.join(DESTINATION_KEYS)}",
            "Pick a supported destination type.",
        )
    kind = destination["type"]
    allowed = DESTINATION_KEYS[kind]
    unknown = sorted(set(destination) - set(allowed))
    if unknown:
        raise _fail(
            path,
            f"destination has unknown key(s) {', '.join(unknown)}; a {kind} destination takes {', '.join(allowed)}",
            "Remove or rename them.",
        )
    if mode not in MODES_BY_DESTINATION[kind]:
        raise _fail(
            path,
            f"mode {mode!r} does not fit a {kind} destination; it supports {', '.join(MODES_BY_DESTINATION[kind])}",
            "Change the mode or the destination.",
        )
    if kind == "file":
        if destination.get("format") not in FILE_FORMATS:
            raise _fail(
                path,
                f"file destination format is {destination.get('format')!r}; expected one of {', '.join(FILE_FORMATS)}",
                "Pick a supported format.",
            )
        if not destination.get("path"):
            raise _fail(path, "file destination has no path", "Give the directory the files go to.")
    if kind == "webhook" and bool(destination.get("url") or destination.get("url_env")) == bool(
        destination.get("local_inbox")
    ):
        raise _fail(
            path,
            "a webhook destination needs exactly one of url / url_env (a receiver you run) or "
            "local_inbox (a directory for the built-in receiver on 127.0.0.1)",
            "Set one of them.",
        )
    if kind in ("ad_audience", "email") and not (destination.get("url") or destination.get("url_env")):
        raise _fail(path, f"a {kind} destination needs url or url_env (the API's base URL)", "Add it.")
    for key in ("ad_audience", "audience_id"), ("email", "list_id"), ("postgres", "table"), ("postgres", "dsn_env"):
        if kind == key[0] and not destination.get(key[1]):
            raise _fail(path, f"a {kind} destination needs {key[1]}", f"Add `{key[1]}:` to the destination.")
    for key in HTTP_KEYS + ("batch_size",):
        if key in destination and not (isinstance(destination[key], int | float) and destination[key] > 0):
            raise _fail(path, f"destination {key} is {destination[key]!r}; expected a positive number", "Fix it.")


def load_sync_spec(path: str | Path) -> SyncSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise _fail(path, f"is not valid YAML ({error})", "Fix the syntax.") from error
    if not isinstance(data, dict):
        raise _fail(
            path,
            f"expected a mapping with keys {', '.join(SPEC_KEYS)}, found {type(data).__name__}",
            "See activation/syncs/ for examples.",
        )
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise _fail(
            path,
            f"unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(SPEC_KEYS)}",
            "Remove or rename them.",
        )
    missing = [key for key in ("name", "audience", "primary_key", "fields", "destination") if key not in data]
    if missing:
        raise _fail(path, f"missing key(s) {', '.join(missing)}", "Add them.")
    audience = str(data["audience"])
    if len(audience.split(".")) != 2 or not all(IDENTIFIER.match(part) for part in audience.split(".")):
        raise _fail(
            path,
            f"audience is {audience!r}; expected schema.table such as segments.seg_high_value",
            "Name the audience table with its schema.",
        )
    mode = data.get("mode", "mirror")
    if mode not in MODES:
        raise _fail(path, f"mode is {mode!r}; expected one of {', '.join(MODES)}", "Pick a supported mode.")
    fields = data["fields"]
    if not isinstance(fields, dict) or not fields:
        raise _fail(
            path, f"fields must map destination field -> audience column; found {fields!r}", "List at least one field."
        )
    for target, column in fields.items():
        if not IDENTIFIER.match(str(target)) or not IDENTIFIER.match(str(column)):
            raise _fail(
                path,
                f"field {target!r}: {column!r} is not a plain column name",
                "Use letters, digits and underscores only.",
            )
    primary_key = str(data["primary_key"])
    if primary_key not in fields.values():
        raise _fail(
            path,
            f"primary_key {primary_key!r} is not among the mapped audience columns ({', '.join(fields.values())})",
            "Map the primary key column to a destination field.",
        )
    identifiers = _identifiers(path, data)
    clash = sorted(set(identifiers) & set(fields))
    if clash:
        raise _fail(
            path,
            f"destination field(s) {', '.join(clash)} appear in both fields and identifiers",
            "Give each destination field one source.",
        )
    destination = data["destination"]
    _check_destination(path, destination, mode)
    if destination["type"] == "ad_audience" and not identifiers:
        raise _fail(
            path,
            "an ad_audience destination matches people by hashed identifiers, and the spec declares none",
            "Add identifiers (e.g. email_sha256: {column: email, type: email}).",
        )
    guard = data.get("guard") or {}
    share = guard.get("max_remove_share", GUARD_DEFAULT_MAX_REMOVE_SHARE) if isinstance(guard, dict) else None
    if not isinstance(share, int | float) or not 0 <= share <= 1:
        raise _fail(
            path,
            f"guard must be {{max_remove_share: <0..1>}}; found {data.get('guard')!r}",
            "Give the largest share of the destination one run may remove, e.g. 0.2.",
        )
    send_holdout = data.get("send_holdout", False)
    if not isinstance(send_holdout, bool):
        raise _fail(
            path,
            f"send_holdout must be true or false; found {send_holdout!r}",
            "Leave it out (holdout members are not sent), or write `send_holdout: true` to send them too.",
        )
    return SyncSpec(
        name=str(data["name"]),
        audience=audience,
        primary_key=primary_key,
        fields={str(k): str(v) for k, v in fields.items()},
        destination=DestinationSpec(
            type=destination["type"], settings={k: v for k, v in destination.items() if k != "type"}
        ),
        mode=mode,
        description=str(data.get("description", "")),
        path=path,
        identifiers=identifiers,
        consents=_string_list(path, data, "consents"),
        consent_key=str(data.get("consent_key", "profile_id")),
        marketing_actions=_marketing_actions(path, data),
        schedule=str(data["schedule"]) if data.get("schedule") else None,
        max_remove_share=float(share),
        send_holdout=send_holdout,
    )


def syncs_dir() -> Path:
    """Where the sync specs live: CDP_SYNCS_DIR if set, else activation/syncs/."""
    return Path(os.environ["CDP_SYNCS_DIR"]) if os.environ.get("CDP_SYNCS_DIR") else SYNCS_DIR


def load_sync_specs(directory: str | Path | None = None) -> dict[str, SyncSpec]:
    directory = Path(directory) if directory else syncs_dir()
    specs: dict[str, SyncSpec] = {}
    for path in sorted(directory.glob("*.yml")):
        spec = load_sync_spec(path)
        if spec.name in specs:
            raise _fail(
                path,
                f"declares name {spec.name!r}, already used by {specs[spec.name].path}",
                "Give every sync a unique name.",
            )
        specs[spec.name] = spec
    return specs
