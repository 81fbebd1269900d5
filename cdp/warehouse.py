"""Opening the warehouse and the serving store, encrypted at rest when a key is set.

With CDP_WAREHOUSE_ENCRYPTION_KEY set, the build warehouse and the serving store are DuckDB files
encrypted with that key (AES-GCM, DuckDB's database encryption): the files hold no plaintext and
cannot be opened without the key. Without it (the demo default) they are plain DuckDB files.

DuckDB writes encrypted files securely with the OpenSSL of its httpfs extension. Its extension
repository is not reachable offline, so the extension comes from PyPI (duckdb-extension-httpfs,
installed once into ~/.duckdb by duckdb-extensions' import_extension), after which `LOAD httpfs`
works from any connection of the user, dbt's included.

An encrypted file is ATTACHed (with ENCRYPTION_KEY) to an in-memory database and made the default
catalog, named after the file (`warehouse` for warehouse.duckdb, the catalog dbt's views name), so
the SQL that runs on a plain file runs unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from cdp.errors import CdpError

ENCRYPTION_KEY_ENV = "CDP_WAREHOUSE_ENCRYPTION_KEY"


class WarehouseError(CdpError):
    """The warehouse (or the serving store) cannot be opened: missing, locked, or the wrong key."""

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path else None


class EncryptionUnavailable(WarehouseError):
    """The key is set but DuckDB cannot load the extension it needs to write encrypted files."""


def encryption_key() -> str | None:
    return os.environ.get(ENCRYPTION_KEY_ENV) or None


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_encryption_support(con: duckdb.DuckDBPyConnection) -> None:
    """Load httpfs (installing it from the PyPI package the first time)."""
    installed = con.execute("select installed from duckdb_extensions() where extension_name = 'httpfs'").fetchone()
    if not (installed and installed[0]):
        try:
            import duckdb_extensions
        except ImportError as error:
            raise EncryptionUnavailable(
                f"{ENCRYPTION_KEY_ENV} is set, but the httpfs extension DuckDB needs for encryption is not installed "
                "and the packages duckdb-extensions / duckdb-extension-httpfs are missing. Install the project's "
                f"dependencies again (they are listed in pyproject.toml), or unset {ENCRYPTION_KEY_ENV}."
            ) from error
        duckdb_extensions.import_extension("httpfs", con=con)
    con.execute("load httpfs")


def attach_options(read_only: bool = False, key: str | None = None) -> str:
    """The options of an ATTACH of a warehouse or store file: `(ENCRYPTION_KEY '...', READ_ONLY)`."""
    options = []
    key = key or encryption_key()
    if key:
        options.append(f"ENCRYPTION_KEY {_literal(key)}")
    if read_only:
        options.append("READ_ONLY")
    return f" ({', '.join(options)})" if options else ""


def attach(
    con: duckdb.DuckDBPyConnection, path: str | Path, alias: str, read_only: bool = False, key: str | None = None
) -> None:
    """ATTACH a warehouse or store file (with the key from the argument or the environment, if any)."""
    key = key or encryption_key()
    if key:
        load_encryption_support(con)
    con.execute(f"attach {_literal(str(path))} as {alias}{attach_options(read_only, key)}")


def connect(
    path: str | Path, read_only: bool = False, config: dict | None = None, key: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A connection whose default catalog is the file at `path` (encrypted when a key is given or set)."""
    key = key or encryption_key()
    if not key:
        return duckdb.connect(str(path), read_only=read_only, config=config or {})
    con = duckdb.connect(":memory:", config=config or {})
    try:
        alias = Path(path).name.split(".")[0] or "db"
        attach(con, path, alias, read_only, key)
        con.execute(f"use {alias}")
    except BaseException:
        con.close()
        raise
    return con


def open_warehouse(path: str | Path | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The one way the application opens the build warehouse (default: CDP_WAREHOUSE): encrypted when
    a key is set, and every expected failure turned into a WarehouseError that says what to do.
    A read-only open needs the file to exist; a writable one creates its folder."""
    from cdp.settings import current_paths

    path = Path(path) if path else current_paths().warehouse
    from cdp.runlock import refuse_if_running

    # A reader between two steps of a run would make the run's next writer fail: refuse instead.
    refuse_if_running(path, f"opening the warehouse{' read-only' if read_only else ''}")
    if read_only and not path.exists():
        raise WarehouseError(
            f"no warehouse at {path} yet: run `cdp run` first (or set CDP_WAREHOUSE to the warehouse file)", path
        )
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return connect(path, read_only=read_only)
    except duckdb.IOException as error:
        text = str(error)
        if "lock" in text.lower():
            raise WarehouseError(
                f"the warehouse {path} is in use by another process ({text.strip()}); "
                "wait for the running job to finish, then try again",
                path,
            ) from None
        raise WarehouseError(f"cannot open the warehouse {path}: {text.strip()}", path) from None
    except (duckdb.InvalidInputException, duckdb.CatalogException, duckdb.BinderException) as error:
        text = str(error)
        if "encrypt" in text.lower() or "key" in text.lower():
            hint = (
                f"the key in {ENCRYPTION_KEY_ENV} does not open it"
                if encryption_key()
                else f"it is encrypted: set {ENCRYPTION_KEY_ENV} to its key"
            )
            raise WarehouseError(f"cannot open the warehouse {path}: {hint} ({text.strip()})", path) from None
        raise


def compact(path: str | Path, key: str | None = None) -> int:
    """Rewrite a database file so that the bytes of deleted rows are gone (DuckDB leaves them in the
    file's free blocks, and a WAL may hold them too): checkpoint it, copy every schema, table, view,
    macro and sequence into a new file beside it (encrypted with the same key, if any), and rename that
    over it. Needs the file closed by every other connection. Returns the new file's size in bytes."""
    path = Path(path)
    fresh = path.with_name(f".{path.name}.compacting")
    for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(":memory:")
    try:
        attach(con, path, "compact_source", key=key)
        con.execute("checkpoint compact_source")  # the WAL's changes into the file, before copying it
        attach(con, fresh, "compact_target", key=key)
        con.execute("copy from database compact_source to compact_target")
        con.execute("detach compact_target")
        con.execute("detach compact_source")
    except BaseException:
        con.close()
        fresh.unlink(missing_ok=True)
        raise
    con.close()
    with open(fresh, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(fresh, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)  # checkpointed above: nothing left in it
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path.stat().st_size
