"""node.advertisement: what is cached, and for how long."""

from __future__ import annotations

from pathlib import Path

from node.advertisement import AdvertisementCache, is_v2


def test_only_v2_upload_pack_advertisements_have_a_key(tmp_path: Path) -> None:
    (tmp_path / "config").write_bytes(b"[core]\n\tbare = true\n")
    cache = AdvertisementCache()
    assert is_v2("version=2") and is_v2("foo:version=2") and not is_v2("version=1")
    assert cache.key("upload-pack", "version=2", ["a"], tmp_path) is not None
    assert cache.key("upload-pack", "", ["a"], tmp_path) is None
    assert cache.key("receive-pack", "version=2", ["a"], tmp_path) is None
    assert cache.key("upload-pack", "version=2", ["a"], tmp_path / "missing") is None


def test_a_changed_repository_config_is_a_new_key(tmp_path: Path) -> None:
    (tmp_path / "config").write_bytes(b"[core]\n")
    before = AdvertisementCache.key("upload-pack", "version=2", ["a"], tmp_path)
    (tmp_path / "config").write_bytes(b"[core]\n[uploadpack]\n\tallowRefInWant = true\n")
    assert AdvertisementCache.key("upload-pack", "version=2", ["a"], tmp_path) != before


def test_least_recently_used_entries_go_first_and_sessions_are_not_kept(tmp_path: Path) -> None:
    (tmp_path / "config").write_bytes(b"")
    cache = AdvertisementCache(max_entries=2)
    keys = [AdvertisementCache.key("upload-pack", "version=2", [str(i)], tmp_path) for i in range(3)]
    assert all(k is not None for k in keys)
    k0, k1, k2 = (k for k in keys if k is not None)
    cache.put(k0, b"zero")
    cache.put(k1, b"one")
    assert cache.get(k0) == b"zero"  # k0 is now the most recent
    cache.put(k2, b"two")
    assert cache.get(k1) is None and cache.get(k0) == b"zero" and cache.get(k2) == b"two"
    cache.put(k1, b"0014session-id=abc\n")
    assert cache.get(k1) is None
