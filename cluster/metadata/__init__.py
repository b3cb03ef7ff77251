"""Cluster metadata replicated through Raft. `api` is the contract the rest of the
cluster codes against; the pysyncobj-backed implementation lives beside it."""
