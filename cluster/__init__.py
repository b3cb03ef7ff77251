"""The routing proxy and everything cluster-wide: metadata (Raft), router, coordinator,
replication, health, election, the git smart-HTTP gateway and the operator CLI."""
