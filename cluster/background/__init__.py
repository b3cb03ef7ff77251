"""The proxy's background loops, each built on `periodic.run_periodically`:

- `elector`: replaces an unhealthy primary (Raft leader only);
- `health`: probes every node and records its view in Raft;
- `replicator`: leases replication jobs and runs them against the nodes;
- `intent_repair`: repairs write intents whose proxy died or timed out;
- `reconciler`: schedules work for outdated, missing and unassigned replicas;
- `verifier`: compares replica checksums and repairs those that differ.
"""
