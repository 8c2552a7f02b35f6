"""Open a SQLite or DuckDB file read-only, locked down: the connection layer of the guard.

The engine is picked from the file's magic bytes, never its extension. Both engines get a connection that cannot
write, attach, load extensions or touch other files, whatever SQL reaches it:

- SQLite: a ``file:…?mode=ro`` URI built with ``Path.as_uri`` (``#`` and ``?`` in a path stay in the path),
  ``PRAGMA query_only``, limits on attached databases and string length, a heap limit, and an authorizer that allows
  reads and allow-listed functions only. A clean WAL database is opened ``immutable`` so no -wal/-shm file appears;
  one whose -wal file holds changes but has no -shm file is refused, since reading it would create one.
- DuckDB: ``read_only`` with external access, extension loading and temp files off, a memory and thread cap, the
  local file system disabled once the file is open (DuckDB would still let a query read its own database file), and
  the configuration locked last.

A file shorter than its own header says (a truncated copy) is refused when it is opened, not at its first query.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edge_sql.errors import DatabaseError
from edge_sql.steps.schema import Schema, read_schema

SQLITE_MAGIC = b"SQLite format 3\x00"
DUCKDB_MAGIC = b"DUCK"  # at offset 8
#: A DuckDB file starts with a main header and two database headers of 4 KiB each, then its blocks.
DUCKDB_HEADER_SIZE = 3 * 4096

#: sqlglot dialect name for each engine.
DIALECTS = {"sqlite": "sqlite", "duckdb": "duckdb"}

#: SQLite functions the authorizer lets a query call (real SQLite names; file, extension and blob functions are absent).
SQLITE_FUNCTIONS = frozenset(
    """
    abs avg count group_concat string_agg max min sum total coalesce ifnull iif nullif instr length octet_length lower
    upper ltrim rtrim trim replace substr substring round typeof hex quote unicode char printf format like glob
    date time datetime julianday strftime unixepoch timediff current_date current_time current_timestamp
    sign ceil ceiling floor sqrt pow power exp ln log log10 log2 mod pi trunc acos asin atan atan2 cos sin tan
    degrees radians concat concat_ws row_number rank dense_rank ntile lag lead first_value last_value nth_value
    percent_rank cume_dist likely unlikely likelihood
    """.split()
)

SQLITE_LIMITS = {  # name -> value; set when the running Python exposes the constant
    "SQLITE_LIMIT_ATTACHED": 0,
    "SQLITE_LIMIT_LENGTH": 10_000_000,
    "SQLITE_LIMIT_SQL_LENGTH": 1_000_000,
    "SQLITE_LIMIT_EXPR_DEPTH": 500,
    "SQLITE_LIMIT_COMPOUND_SELECT": 200,
}

DUCKDB_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "max_temp_directory_size": "0B",
    "temp_directory": "",  # nothing is spilled to disk: past memory_limit a query fails with "Out of Memory Error"
    "memory_limit": "1GB",
    "threads": 2,
}


@dataclass
class Database:
    """An open, locked-down database and its schema."""

    path: Path
    engine: str
    connection: object
    schema: Schema = field(repr=False)
    #: Where queries run when not on ``connection``: a worker process (``sandbox.isolate``), else None.
    worker: object | None = field(default=None, repr=False)

    @property
    def dialect(self) -> str:
        return DIALECTS[self.engine]

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        self.connection.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def detect_engine(path: Path) -> str:
    """Return ``"sqlite"`` or ``"duckdb"`` from the file's first bytes, or raise :class:`DatabaseError`."""
    path = Path(path)
    if not path.exists():
        raise DatabaseError(f"no such database file: {path}")
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory; give the path of a SQLite or DuckDB file")
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise DatabaseError(f"cannot read {path}: {error.strerror}") from None
    if not head:
        raise DatabaseError(f"{path} is empty; give the path of a SQLite or DuckDB file")
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head[8:12] == DUCKDB_MAGIC:
        return "duckdb"
    raise DatabaseError(f"{path} is not a SQLite or DuckDB database")


def open_database(path: Path | str) -> Database:
    """Open ``path`` read-only and locked down, and read its schema."""
    path = Path(path).expanduser()
    engine = detect_engine(path)
    opener = open_sqlite if engine == "sqlite" else open_duckdb
    connection = opener(path)
    try:
        if engine == "duckdb":
            check_duckdb_size(path, connection)
        schema = read_schema(connection, engine)
        lock_down = lock_down_sqlite if engine == "sqlite" else lock_down_duckdb
        lock_down(connection)
    except DatabaseError:
        connection.close()
        raise
    except Exception as error:
        connection.close()
        raise DatabaseError(describe_error(path, error)) from None
    if not schema.tables:
        connection.close()
        raise DatabaseError(f"{path} has no tables to ask about")
    return Database(path=path, engine=engine, connection=connection, schema=schema)


def open_sqlite(path: Path) -> sqlite3.Connection:
    check_sqlite_size(path)
    check_no_pending_wal(path)
    uri = path.resolve().as_uri() + ("?immutable=1" if is_clean_wal(path) else "?mode=ro")
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=2.0, check_same_thread=False, isolation_level=None)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as error:
        if "unable to open" in str(error) and not uri.endswith("immutable=1"):
            return open_sqlite_immutable(path, error)
        raise DatabaseError(describe_error(path, error)) from None
    return connection


def open_sqlite_immutable(path: Path, first_error: Exception) -> sqlite3.Connection:
    """A WAL database in a read-only directory cannot get its -shm file: read the main file as it is."""
    try:
        connection = sqlite3.connect(path.resolve().as_uri() + "?immutable=1", uri=True, check_same_thread=False)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.Error:
        raise DatabaseError(describe_error(path, first_error)) from None


def is_wal_mode(path: Path) -> bool:
    """The file's header says WAL mode (bytes 18-19 = 2)."""
    with path.open("rb") as handle:
        header = handle.read(20)
    return len(header) >= 20 and header[18] == 2 and header[19] == 2


def is_clean_wal(path: Path) -> bool:
    """A WAL-mode file with no -wal file beside it (or an empty one and no -shm): all its data is in the main file."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if not is_wal_mode(path):
        return False
    return not wal.exists() or (wal.stat().st_size == 0 and not shm.exists())


def check_no_pending_wal(path: Path) -> None:
    """Refuse a WAL database whose -wal file holds changes but whose -shm file is gone (a crash, or a copy of the
    files): SQLite would create the -shm file to read the changes, and ``immutable`` would silently skip them."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if is_wal_mode(path) and wal.exists() and wal.stat().st_size > 0 and not shm.exists():
        raise DatabaseError(
            f"{path} has changes in {wal.name} that are not in the database file yet, and reading them would create "
            f"{shm.name}; checkpoint it first where it is writable: sqlite3 '{path}' 'PRAGMA wal_checkpoint(TRUNCATE)'"
        )


def check_sqlite_size(path: Path) -> None:
    """Refuse a file shorter than the page count in its header (when that count is valid: bytes 24-27 = 92-95)."""
    with path.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100:
        raise DatabaseError(f"{path} is truncated: it is shorter than a SQLite header; restore it from a good copy")
    (page_size,) = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    changes, pages = struct.unpack(">II", header[24:32])
    (valid_for,) = struct.unpack(">I", header[92:96])
    expected = page_size * pages
    if pages and changes == valid_for and path.stat().st_size < expected:
        raise DatabaseError(f"{path} is truncated: its header says {expected:,} bytes but the file has "
                            f"{path.stat().st_size:,}; restore it from a good copy")


def check_duckdb_size(path: Path, connection) -> None:
    """Refuse a file too short to hold the blocks DuckDB says are in use (a truncated copy fails only at the query
    that reads a missing block otherwise)."""
    block_size, total, free = connection.execute(
        "SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()"
    ).fetchone()
    expected = DUCKDB_HEADER_SIZE + (total - free) * block_size
    size = path.stat().st_size
    if size < expected:
        raise DatabaseError(f"{path} is truncated: it holds {total - free} blocks of {block_size:,} bytes "
                            f"({expected:,} bytes) but the file has {size:,}; restore it from a good copy")


def lock_down_sqlite(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA query_only = 1")
    connection.execute("PRAGMA temp_store = MEMORY")  # a large sort stays in memory (bounded), never in a temp file
    for name, value in SQLITE_LIMITS.items():
        if hasattr(sqlite3, name):
            connection.setlimit(getattr(sqlite3, name), value)
    connection.set_authorizer(sqlite_authorizer)


def sqlite_authorizer(action: int, arg1, arg2, database, trigger) -> int:
    """Allow reads and allow-listed functions; deny every other action (writes, ATTACH, PRAGMA, …)."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").isascii() and (arg2 or "").lower() in SQLITE_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def open_duckdb(path: Path):
    import duckdb

    if "?" in str(path.resolve()):  # DuckDB reads it as options: its WAL check then names a file outside the sandbox
        raise DatabaseError(f"DuckDB cannot open {path} read-only and locked down: it reads the '?' in the path as the "
                            "start of options; rename the file or its folder without '?'")
    try:
        return duckdb.connect(str(path), read_only=True, config=dict(DUCKDB_CONFIG))
    except duckdb.Error as error:
        raise DatabaseError(describe_error(path, error)) from None


def lock_down_duckdb(connection) -> None:
    """Close DuckDB's door to the file system, then lock the configuration.

    ``enable_external_access = false`` is not enough on its own: DuckDB adds the database it opened, its WAL,
    checkpoint and recovery files to ``allowed_paths`` (and a ``.tmp`` folder beside it to ``allowed_directories``),
    so ``read_blob``, ``read_text`` or ``glob`` on the database's own file would still be answered. Disabling the
    local file system after the file is open stops every file reader; the database keeps reading its blocks through
    the handle it already holds."""
    connection.execute("SET disabled_filesystems = 'LocalFileSystem'")
    connection.execute("SET lock_configuration = true")


def describe_error(path: Path, error: Exception) -> str:
    """One line that names the problem with ``path`` and, where there is one, the fix."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    lowered = text.lower()
    if "locked" in lowered or "could not set lock" in lowered or "conflicting lock" in lowered:
        return f"{path} is locked by another process; try again once it has finished writing"
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return f"{path} is damaged or not a database ({text}); restore it from a good copy"
    if "could not read enough bytes" in lowered:
        return f"{path} is truncated or damaged ({text}); restore it from a good copy"
    if "unable to open" in lowered or "permission" in lowered:
        return f"cannot open {path} read-only ({text}); check the file's permissions"
    return f"cannot read {path}: {text}"
