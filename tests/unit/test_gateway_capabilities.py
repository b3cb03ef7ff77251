"""cluster.gateway.capabilities: what the gateway keeps of v2 advertisements, and how long."""

from __future__ import annotations

from cluster.gateway.capabilities import MAX_BYTES, CapabilityCache, is_v2

CAPS = b"000eversion 2\n0015agent=git/2.43.0\n0000"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_ttl_seconds() -> None:
    clock = Clock()
    cache = CapabilityCache(ttl=30.0, clock=clock)
    cache.put(("id1", "version=2"), CAPS)
    assert cache.get(("id1", "version=2")) == CAPS
    assert cache.get(("id2", "version=2")) is None  # another repository (or a re-created one)
    assert cache.get(("id1", "version=2:x=1")) is None
    clock.now += 29.9
    assert cache.get(("id1", "version=2")) == CAPS
    clock.now += 0.1
    assert cache.get(("id1", "version=2")) is None


def test_sessions_and_large_answers_are_not_kept() -> None:
    cache = CapabilityCache()
    cache.put(("a", "version=2"), CAPS + b"0014session-id=abc\n")
    cache.put(("b", "version=2"), b"x" * (MAX_BYTES + 1))
    assert cache.get(("a", "version=2")) is None
    assert cache.get(("b", "version=2")) is None


def test_least_recently_used_goes_first() -> None:
    cache = CapabilityCache(max_entries=2)
    cache.put(("a", "version=2"), CAPS)
    cache.put(("b", "version=2"), CAPS)
    assert cache.get(("a", "version=2")) == CAPS
    cache.put(("c", "version=2"), CAPS)
    assert cache.get(("b", "version=2")) is None
    assert cache.get(("a", "version=2")) == CAPS


def test_is_v2() -> None:
    assert is_v2("version=2")
    assert is_v2("object-format=sha1:version=2")
    assert not is_v2("")
    assert not is_v2("version=1")
