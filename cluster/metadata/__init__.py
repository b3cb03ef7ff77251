"""Cluster metadata replicated through Raft. `api` is the contract the rest of the
cluster codes against; the pysyncobj-backed implementation lives beside it:

    api           MetadataStore protocol, dataclasses, JobState/ChangeType
    config        RaftConfig (the proxy's `[raft]` table)
    store         RaftMetadataStore: async commands (group commit), barrier, queries
    batcher       group commit of concurrent commands into one log entry
    raft          RaftDatabase: pysyncobj behind our interface; snapshots; durability
    statemachine  apply(): one command -> one SQLite transaction, never raises
    handlers      storages, repositories, writes, health votes
    jobs          the replication queue (lease, renew, complete, fail)
    queries       read-only queries over aiosqlite
    schema        the SQLite schema

Test tooling lives apart, in cluster.testing: `raft_member` (one member behind a JSON
control port) and `raft_cluster` (member processes for tests and benchmarks).
"""
