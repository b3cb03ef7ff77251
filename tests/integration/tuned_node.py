"""A NodeProcess whose TOML gets extra lines: `cluster.testing.TunedNode`, named here
for the tests that import it from this module."""

from __future__ import annotations

from cluster.testing import TunedNode

__all__ = ["TunedNode"]
