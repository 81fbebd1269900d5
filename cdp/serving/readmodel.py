"""The profile read model: identifier -> profile -> pre-rendered documents, in a SQLite file.

A profile lookup is the API's hot path. Through DuckDB it costs two ART index probes on a columnar
file plus the query machinery (parse, plan, a vectorized scan of one row: about 1 ms warm, far more
at 1M profiles once the indexes and row groups a lookup touches are not cached; docs/serving.md has the
profile). A B-tree keyed for exactly this question answers it in microseconds: SQLite, in the standard
library, opened read-only and immutable (no locks: a published file is never written again) and
memory-mapped.

The file, `<store stem>.profiles.sqlite` beside the serving store, is written by every publication
from the tables it has just copied (same run id, recorded in its `publication` table), and renamed
into place just before the store itself: a reader that sees the new store finds the new read model
already there, and the API checks both carry the same run id before it switches (cdp/serving/store.py).

Layout:
- `identifiers(lookup_key, document_id)`: lookup_key is the first 16 bytes of
  sha256(secret | namespace | value) of the normalized identifier; with encryption at rest
  (CDP_WAREHOUSE_ENCRYPTION_KEY) the secret is derived from that key, so the file holds no identifier in
  clear; without it the secret is empty (the store next to it holds the identifiers in clear anyway).
- `full_documents(document_id, profile_id, document)` and `masked_documents(document_id, profile_id, document)`: the
  API's Profile JSON for the full and the masked scope, rendered in SQL at publication (masked as the bi
  relations are: same maskings, same keyed pseudonyms). Two tables, so a lookup of one scope touches
  pages of that scope only (about 5 KiB a document: three to a page). Encrypted with AES-GCM when
  encryption at rest is on.
- `namespaces(namespace)`: which identity namespaces exist (a lookup that finds nothing says whether
  the namespace is unknown or the value is).
- `publication(run_id, published_at, profiles, identifiers)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cdp.errors import CdpError
from cdp.serving.documents import profile_documents_sql, sql_literal, to_json_text
from cdp.warehouse import encryption_key

READ_MODEL_SUFFIX = ".profiles.sqlite"
KEY_BYTES = 16  # of the sha256 lookup key: 128 bits, no collision among billions of identifiers
PAGE_SIZE = 16384  # documents of about 5 KiB: three to a page, rarely an overflow chain
MMAP_BYTES = 1 << 40  # map the whole file (SQLite caps it at its compile-time maximum)
BATCH_ROWS = 5_000  # rows moved from DuckDB to SQLite per executemany
WRITE_CACHE_KIB = 256 * 1024
NONCE_BYTES = 12
# The published tables the documents and lookups are made of (documents.profile_documents_sql and
# write_read_model): when none of them changed since the last publication, its read model is reused.
READ_MODEL_INPUTS = frozenset(
    {
        "profiles.profiles",
        "profiles.profile_traits",
        "profiles.profile_predictions",
        "profiles.profile_consents",
        "profiles.profile_identities",
        "profiles.profile_attribute_lineage",
        "profiles.profile_events",
        "segments.segment_memberships",
        "identity.identity_namespaces",
    }
)


class ReadModelError(CdpError):
    """The profile read model cannot be written or read."""


def read_model_path(store: Path) -> Path:
    store = Path(store)
    return store.with_name(store.stem + READ_MODEL_SUFFIX)


def _secret(key: str | None) -> bytes:
    """The secret of the lookup keys and documents: derived from the encryption key at rest, if any."""
    return hashlib.sha256(b"cdp profile read model|" + key.encode()).digest() if key else b""


def lookup_key(secret: bytes, namespace: str, normalized_value: str) -> bytes:
    """What `identifiers.lookup_key` holds for an identifier (as _lookup_key_sql computes it)."""
    return hashlib.sha256(secret.hex().encode() + b"|" + f"{namespace}|{normalized_value}".encode()).digest()[
        :KEY_BYTES
    ]


def _lookup_key_sql(secret: bytes) -> str:
    return (
        f"unhex(left(sha256({sql_literal(secret.hex())} || '|' || namespace || '|' || identity_value), "
        f"{2 * KEY_BYTES}))"
    )


def _cipher(secret: bytes):
    if not secret:
        return None
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:  # pragma: no cover - a dependency of the project
        raise ReadModelError(
            "encryption at rest is on, but the cryptography package is missing; install the project's "
            "dependencies again (pyproject.toml lists it)"
        ) from error
    return AESGCM(secret)


def _seal(cipher, text: str) -> bytes | str:
    """A document as stored: the text, or nonce + AES-GCM ciphertext."""
    if cipher is None:
        return text
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, text.encode(), None)


def _open_sealed(cipher, stored: bytes | str) -> bytes:
    if cipher is None:
        return stored.encode() if isinstance(stored, str) else stored
    return cipher.decrypt(stored[:NONCE_BYTES], stored[NONCE_BYTES:], None)


@dataclass(frozen=True)
class ReadModelCounts:
    documents: int
    identifiers: int


def write_read_model(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    run_id: str,
    published_at: str,
    masked: dict[str, dict[str, str]],
    batch_profiles: int = 100_000,
) -> ReadModelCounts:
    """Write the read model of the tables the publishing connection `con` holds (the new store) to
    `path` (a new file; the caller renames it into place). `masked`: table -> column -> masking; the
    masking key variable must be set on `con` (documents.MASKING_KEY_VARIABLE)."""
    path.unlink(missing_ok=True)
    secret = _secret(encryption_key())
    cipher = _cipher(secret)
    with _new_file(path, page_size=PAGE_SIZE) as target:
        target.execute("begin")
        target.execute(
            "create table full_documents (document_id integer primary key, profile_id text not null, "
            "document blob not null)"
        )
        target.execute(
            "create table masked_documents (document_id integer primary key, profile_id text not null, "
            "document blob not null)"
        )
        target.execute(
            "create table identifiers (lookup_key blob primary key, document_id integer not null) without rowid"
        )
        target.execute("create table namespaces (namespace text primary key) without rowid")
        target.execute(
            "create table publication (run_id text not null, published_at text not null, profiles integer not null, "
            "identifiers integer not null)"
        )
        con.execute(
            "create or replace temp table read_model_ids as "
            "select profile_id, row_number() over (order by profile_id) as document_id from profiles.profiles"
        )
        # Profile id ranges of `batch_profiles`: each range is one query (memory stays bounded), and the
        # published tables are sorted by profile id, so each range reads only its own row groups.
        bounds = [
            row[0]
            for row in con.execute(
                f"select profile_id from temp.read_model_ids where (document_id - 1) % {int(batch_profiles)} = 0 "
                "order by 1"
            ).fetchall()
        ]
        documents = 0
        for number, lower in enumerate(bounds):
            upper = bounds[number + 1] if number + 1 < len(bounds) else None
            in_range = f"profile_id >= {sql_literal(lower)}" + (
                f" and profile_id < {sql_literal(upper)}" if upper else ""
            )
            result = con.execute(
                f"""with rendered as ({profile_documents_sql(con, run_id, masked, in_range)})
                    select r.document_id, d.profile_id, d.full_document, d.masked_document
                    from rendered as d join temp.read_model_ids as r using (profile_id)"""
            )
            while rows := result.fetchmany(BATCH_ROWS):
                target.executemany(
                    "insert into full_documents values (?, ?, ?)", [(i, p, _seal(cipher, f)) for i, p, f, _ in rows]
                )
                target.executemany(
                    "insert into masked_documents values (?, ?, ?)", [(i, p, _seal(cipher, m)) for i, p, _, m in rows]
                )
                documents += len(rows)
        identifiers = 0
        result = con.execute(
            f"select {_lookup_key_sql(secret)} as lookup_key, r.document_id "
            "from profiles.profile_identities as i join temp.read_model_ids as r using (profile_id) order by 1"
        )
        while rows := result.fetchmany(BATCH_ROWS * 4):
            try:
                target.executemany("insert into identifiers values (?, ?)", rows)
            except sqlite3.IntegrityError as error:
                raise ReadModelError(
                    "profiles.profile_identities holds one identifier (namespace and value) for two profiles; "
                    "expected each identifier in one profile (its dbt unique test); rebuild the profiles"
                ) from error
            identifiers += len(rows)
        declared = con.execute(
            "select count(*) from information_schema.tables where table_catalog = current_database() "
            "and table_schema = 'identity' and table_name = 'identity_namespaces'"
        ).fetchone()[0]
        namespaces = "select namespace from profiles.profile_identities" + (
            " union select namespace from identity.identity_namespaces" if declared else ""
        )
        target.executemany("insert into namespaces values (?)", con.execute(f"{namespaces} order by 1").fetchall())
        target.execute("insert into publication values (?, ?, ?, ?)", [run_id, published_at, documents, identifiers])
        target.execute("commit")
        con.execute("drop table temp.read_model_ids")
    return ReadModelCounts(documents=documents, identifiers=identifiers)


def reuse_read_model(
    previous: Path, path: Path, previous_run_id: str, run_id: str, published_at: str
) -> ReadModelCounts | None:
    """The previous publication's read model as this one's, at `path` (a new file; the caller renames it
    into place), when its tables did not change: a copy whose documents and `publication` row carry the new
    run id. None (and no file) when it cannot be reused: encrypted documents (they would have to be
    decrypted to be stamped), no previous file, or one of another run than `previous_run_id`."""
    if encryption_key() or not previous.is_file():
        return None
    path.unlink(missing_ok=True)
    shutil.copyfile(previous, path)
    try:
        with _new_file(path) as target:
            (old_run_id, documents, identifiers), *_ = target.execute(
                "select run_id, profiles, identifiers from publication"
            ).fetchall()
            if old_run_id != previous_run_id:
                raise LookupError(f"read model of run {old_run_id}, store of run {previous_run_id}")
            # Every document says which run published it, right after its profile id (documents.py).
            old, new = (f'"published_run_id":{to_json_text(r)},"scope":' for r in (old_run_id, run_id))
            target.execute("begin")
            for table in ("full_documents", "masked_documents"):
                stamped = target.execute(
                    f"update {table} set document = replace(document, ?, ?) where instr(document, ?) > 0",
                    [old, new, old],
                ).rowcount
                if stamped != documents:
                    raise LookupError(f"{table}: {stamped} of {documents} documents carry the run id")
            target.execute("update publication set run_id = ?, published_at = ?", [run_id, published_at])
            target.execute("commit")
    except (sqlite3.Error, LookupError, ValueError):
        return None  # the file is removed: the caller renders the read model anew
    return ReadModelCounts(documents=documents, identifiers=identifiers)


@contextlib.contextmanager
def _new_file(path: Path, page_size: int | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to the read model file being written at `path`: without a journal (a new file, renamed
    into place only when whole) or syncs (the publisher fsyncs it before the rename). Closed at the end,
    and the file removed when the writing fails."""
    target = sqlite3.connect(path, isolation_level=None)
    try:
        if page_size:
            target.execute(f"pragma page_size = {page_size}")
        target.execute("pragma journal_mode = off")
        target.execute("pragma synchronous = off")
        target.execute(f"pragma cache_size = -{WRITE_CACHE_KIB}")  # a batch's documents land in any order
        yield target
    except BaseException:
        target.close()
        path.unlink(missing_ok=True)
        raise
    target.close()


@dataclass(frozen=True)
class Found:
    profile_id: str
    document: bytes  # the Profile JSON, UTF-8


class ReadModel:
    """A published read model, opened read-only for lookups. One connection; SQLite serializes its
    use (the API calls it from its event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            # immutable: no locks and no change checks; a published file is replaced, never written.
            self.connection = sqlite3.connect(
                f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False, isolation_level=None
            )
            self.connection.execute(f"pragma mmap_size = {MMAP_BYTES}")
            self.run_id, self.published_at = self.connection.execute(
                "select run_id, published_at from publication"
            ).fetchone()
            self.namespaces = frozenset(r[0] for r in self.connection.execute("select namespace from namespaces"))
        except sqlite3.Error as error:
            raise ReadModelError(
                f"the profile read model {self.path} cannot be read ({error}); publish again (`cdp run`)"
            ) from error
        secret = _secret(encryption_key())
        self._secret = secret
        self._cipher = _cipher(secret)
        self._full = (
            "select d.profile_id, d.document from identifiers as i join full_documents as d using (document_id) "
            "where i.lookup_key = ?"
        )
        self._masked = self._full.replace("full_documents", "masked_documents")

    def find(self, namespace: str, normalized_value: str, masked: bool = False) -> Found | None:
        row = self.connection.execute(
            self._masked if masked else self._full, (lookup_key(self._secret, namespace, normalized_value),)
        ).fetchone()
        if row is None:
            return None
        try:
            return Found(row[0], _open_sealed(self._cipher, row[1]))
        except Exception as error:  # cryptography's InvalidTag: another key than the publication's
            raise ReadModelError(
                f"the profile read model {self.path} does not open with the encryption key set now; "
                "set the key it was published with, or publish again"
            ) from error

    def close(self) -> None:
        self.connection.close()
