"""The local-cluster launcher behind `gitraft dev` / `make run`: port allocation, the
on-disk layout of a cluster (`cluster.json`, per-process TOML), child processes that
die with their parent, and a real Prometheus beside the cluster.

Shipped (a user feature) but never imported by `gitraft proxy` or `gitraft node`
(tests/unit/test_import_boundaries.py)."""
