"""The SQLite schema of the metadata state machine (DESIGN.md "Data model").

The database is *derived*: every proxy rebuilds it at start from pysyncobj's snapshot
plus journal replay (see `cluster.metadata.raft`), so a schema change needs no
migration of live files - only a new snapshot format if old snapshots must load.

Columns a reader may wonder about:
- `repositories.replication_factor`: the replicas wanted (set at creation, tracking and
  by an operator's `set_replication_factor`; a re-assignment keeps it). The replica rows
  are the replicas assigned, fewer while too few storages exist.
- `replicas` rows *are* the assignment: an unassigned replica has no row (its data is
  removed by a `delete_replica` job), so every `api.Replica` is assigned.
- `replicas.needs_verify`: set by a write that failed on that replica (its refs may
  have changed without a new generation); read by the verifier (`needs_verify` query),
  which compares checksums and clears it (`clear_needs_verify`); cleared too when the
  replica is overwritten (a completed update, accepted data loss, a reset).
"""

from __future__ import annotations

import re
import sqlite3

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS storages (
    name    TEXT PRIMARY KEY,
    address TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repositories (
    repository_id      TEXT PRIMARY KEY,
    relative_path      TEXT NOT NULL UNIQUE,
    replica_path       TEXT NOT NULL,
    "primary"          TEXT NOT NULL,
    replication_factor INTEGER NOT NULL,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas (
    repository_id TEXT NOT NULL,
    storage       TEXT NOT NULL,
    generation    INTEGER NOT NULL DEFAULT -1,
    -- 1 when a write failed here: refs may have changed, compare checksums.
    needs_verify  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repository_id, storage)
);
CREATE TABLE IF NOT EXISTS replication_jobs (
    id                INTEGER PRIMARY KEY,
    repository_id     TEXT NOT NULL,
    change            TEXT NOT NULL,
    source            TEXT NOT NULL,
    target            TEXT NOT NULL,
    source_generation INTEGER NOT NULL,
    state             TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT NOT NULL DEFAULT '',
    lease_expires_at  REAL NOT NULL DEFAULT 0,
    retry_at          REAL NOT NULL DEFAULT 0,
    last_error        TEXT NOT NULL DEFAULT '',
    params            TEXT NOT NULL DEFAULT '{}',
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON replication_jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_target ON replication_jobs (repository_id, target, state);
CREATE TABLE IF NOT EXISTS write_intents (
    intent_id     TEXT PRIMARY KEY,
    repository_id TEXT NOT NULL,
    proxy         TEXT NOT NULL,
    storages      TEXT NOT NULL,
    deadline      REAL NOT NULL,
    -- NULL while open; the JSON result of finish_write once closed.
    result        TEXT,
    -- NULL for an intent begun without fencing (older entries); else JSON: the storage
    -- that executes the write, the primary and generation at begin, why it is fenced
    -- (null while it may still be acknowledged), the replicas copied from it meanwhile.
    fence         TEXT
);
CREATE INDEX IF NOT EXISTS intents_open ON write_intents (deadline) WHERE result IS NULL;
CREATE INDEX IF NOT EXISTS intents_closed ON write_intents (deadline) WHERE result IS NOT NULL;
-- A repository's open intents (fencing reads them on every write and job completion).
CREATE INDEX IF NOT EXISTS intents_open_by_repository ON write_intents (repository_id) WHERE result IS NULL;
CREATE TABLE IF NOT EXISTS health_votes (
    proxy      TEXT NOT NULL,
    storage    TEXT NOT NULL,
    healthy    INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (proxy, storage)
);
-- Derived: the assigned replicas whose generation is below their repository's
-- (max over its replicas), kept by the triggers below on every change of `replicas`,
-- so the reconciler and the elector find them without scanning every repository.
CREATE TABLE IF NOT EXISTS outdated_replicas (
    repository_id TEXT NOT NULL,
    storage       TEXT NOT NULL,
    PRIMARY KEY (repository_id, storage)
) WITHOUT ROWID;
-- Derived counters, kept by triggers (below), so placement and status read a few rows
-- instead of counting every repository and job.
CREATE TABLE IF NOT EXISTS storage_load (
    storage   TEXT PRIMARY KEY,
    replicas  INTEGER NOT NULL DEFAULT 0,
    primaries INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_state_counts (
    state TEXT PRIMARY KEY,
    jobs  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replicas_by_storage ON replicas (storage, repository_id);
CREATE INDEX IF NOT EXISTS replicas_needs_verify ON replicas (repository_id, storage) WHERE needs_verify = 1;
CREATE INDEX IF NOT EXISTS outdated_by_storage ON outdated_replicas (storage, repository_id);
CREATE INDEX IF NOT EXISTS repositories_by_primary ON repositories ("primary", repository_id);
CREATE INDEX IF NOT EXISTS jobs_by_state_updated ON replication_jobs (state, updated_at);
-- Command ids already applied, with their result: a retried command applies once.
CREATE TABLE IF NOT EXISTS applied_commands (
    seq        INTEGER PRIMARY KEY,
    command_id TEXT NOT NULL UNIQUE,
    result     TEXT NOT NULL
);
"""

# Tables compared when two databases must hold the same state (tests, checks).
STATE_TABLES = (
    "meta",
    "storages",
    "repositories",
    "replicas",
    "replication_jobs",
    "write_intents",
    "health_votes",
    "applied_commands",
    "outdated_replicas",
    "storage_load",
    "job_state_counts",
)


def _refresh_outdated(ref: str) -> str:
    """Trigger body: recompute the outdated replicas of repository `ref`.repository_id."""
    return f"""
    DELETE FROM outdated_replicas WHERE repository_id = {ref}.repository_id;
    INSERT INTO outdated_replicas (repository_id, storage)
        SELECT repository_id, storage FROM replicas WHERE repository_id = {ref}.repository_id
        AND generation < (SELECT MAX(generation) FROM replicas WHERE repository_id = {ref}.repository_id);
"""


TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS replicas_outdated_insert AFTER INSERT ON replicas
BEGIN {_refresh_outdated("NEW")} END;
CREATE TRIGGER IF NOT EXISTS replicas_outdated_update AFTER UPDATE OF generation ON replicas
BEGIN {_refresh_outdated("NEW")} END;
CREATE TRIGGER IF NOT EXISTS replicas_outdated_delete AFTER DELETE ON replicas
BEGIN {_refresh_outdated("OLD")} END;
"""


# Every column of each counter table: a row whose counters are all 0 is removed, so the
# triggers keep exactly the rows REBUILD_COUNTERS makes (no row for nothing). A member
# that rebuilt them (a restart, a restored snapshot) then holds the same rows as one
# that counted all along: the chaos run's metadata checker found proxy-2, restarted,
# without the `failed | 0` row the others kept.
_COUNTERS = {"storage_load": ("replicas", "primaries"), "job_state_counts": ("jobs",)}


def _count(table: str, key: str, column: str, value: str, delta: int) -> str:
    update = (
        f"INSERT INTO {table} ({key}, {column}) VALUES ({value}, {delta})"
        f" ON CONFLICT ({key}) DO UPDATE SET {column} = {column} + ({delta});"
    )
    if delta >= 0:
        return update
    empty = " AND ".join(f"{c} = 0" for c in _COUNTERS[table])
    return f"{update} DELETE FROM {table} WHERE {key} = {value} AND {empty};"


COUNTER_TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS replicas_load_insert AFTER INSERT ON replicas
BEGIN {_count("storage_load", "storage", "replicas", "NEW.storage", 1)} END;
CREATE TRIGGER IF NOT EXISTS replicas_load_delete AFTER DELETE ON replicas
BEGIN {_count("storage_load", "storage", "replicas", "OLD.storage", -1)} END;
CREATE TRIGGER IF NOT EXISTS repositories_load_insert AFTER INSERT ON repositories
BEGIN {_count("storage_load", "storage", "primaries", 'NEW."primary"', 1)} END;
CREATE TRIGGER IF NOT EXISTS repositories_load_delete AFTER DELETE ON repositories
BEGIN {_count("storage_load", "storage", "primaries", 'OLD."primary"', -1)} END;
CREATE TRIGGER IF NOT EXISTS repositories_load_update AFTER UPDATE OF "primary" ON repositories
BEGIN
    {_count("storage_load", "storage", "primaries", 'OLD."primary"', -1)}
    {_count("storage_load", "storage", "primaries", 'NEW."primary"', 1)}
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON replication_jobs
BEGIN {_count("job_state_counts", "state", "jobs", "NEW.state", 1)} END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON replication_jobs
BEGIN {_count("job_state_counts", "state", "jobs", "OLD.state", -1)} END;
CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF state ON replication_jobs
WHEN OLD.state != NEW.state
BEGIN
    {_count("job_state_counts", "state", "jobs", "OLD.state", -1)}
    {_count("job_state_counts", "state", "jobs", "NEW.state", 1)}
END;
"""

COUNTER_TRIGGER_NAMES = re.findall(r"CREATE TRIGGER IF NOT EXISTS (\w+)", COUNTER_TRIGGERS)

REBUILD_COUNTERS = """
DELETE FROM storage_load;
INSERT INTO storage_load (storage, replicas, primaries)
    SELECT storage, SUM(replicas), SUM(primaries) FROM (
        SELECT storage, COUNT(*) AS replicas, 0 AS primaries FROM replicas GROUP BY storage
        UNION ALL
        SELECT "primary", 0, COUNT(*) FROM repositories GROUP BY "primary"
    ) GROUP BY storage;
DELETE FROM job_state_counts;
INSERT INTO job_state_counts (state, jobs) SELECT state, COUNT(*) FROM replication_jobs GROUP BY state;
"""

# Rebuild of the derived tables from their sources (a database written before they existed).
REBUILD_OUTDATED = """
DELETE FROM outdated_replicas;
INSERT INTO outdated_replicas (repository_id, storage)
    SELECT r.repository_id, r.storage FROM replicas r
    JOIN (SELECT repository_id, MAX(generation) AS g FROM replicas GROUP BY repository_id) m
      ON m.repository_id = r.repository_id
    WHERE r.generation < m.g;
"""


def connect(path: str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A writer connection: autocommit (explicit BEGIN), WAL so readers never block it.

    `synchronous=OFF` is safe because the file is rebuilt from Raft's own files at
    start; it is never the source of truth. No other pragma changes what a command
    does (no foreign keys): a database restored into any connection applies alike."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    return conn


# Columns added after SCHEMA_VERSION 1 shipped: (table, column, declaration). A database
# restored from an older snapshot gets them (NULL/default) when `create` runs on it.
ADDED_COLUMNS = (("write_intents", "fence", "TEXT"),)


def create(conn: sqlite3.Connection) -> None:
    """Create every table, index and trigger (idempotent), add columns an older database
    lacks, and stamp the schema version.

    Also rebuilds the derived tables (`outdated_replicas`, `storage_load`,
    `job_state_counts`) from their sources (a pure function of them, so every member
    gets the same rows whenever it runs this): call it again after restoring a snapshot
    that may predate them."""
    conn.executescript(DDL)
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    conn.executescript(TRIGGERS)
    # This code's counter triggers, not those of the snapshot a database came from.
    conn.executescript("".join(f"DROP TRIGGER IF EXISTS {name};" for name in COUNTER_TRIGGER_NAMES))
    conn.executescript(COUNTER_TRIGGERS)
    conn.executescript(f"BEGIN; {REBUILD_OUTDATED} {REBUILD_COUNTERS} COMMIT;")
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


def dump_state(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every state table, in primary-key order (for equality checks)."""
    out: dict[str, list[tuple[object, ...]]] = {}
    for table in STATE_TABLES:
        out[table] = [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return out
