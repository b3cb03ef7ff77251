"""The chaos checkers on hand-written histories (no cluster): each finds the anomaly
it exists for and accepts a correct history; the nemesis schedule is a function of
the seed; the relay blocks one direction of a real TCP connection and heals."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.chaos.harness.checkers.linear import check_register
from tests.chaos.harness.checkers.metadata import MetadataObserver, agreement
from tests.chaos.harness.checkers.reads import monotonic_tips, stale_reads
from tests.chaos.harness.checkers.writes import lost_writes
from tests.chaos.harness.history import FAILED, OK, UNKNOWN, History, Op
from tests.chaos.harness.nemesis import ALL_KINDS, schedule
from tests.chaos.harness.relay import RelayNet
from tests.chaos.harness.workloads import CommitGraph

C0, C1, C2, C3 = ("0" * 39 + str(i) for i in range(4))


def graph() -> CommitGraph:
    g = CommitGraph()
    g.add(C0, "")
    g.add(C1, C0)
    g.add(C2, C1)
    g.add(C3, C2)
    return g


def op(
    i: int,
    kind: str,
    start: float,
    end: float | None,
    outcome: str = OK,
    value: object = None,
    **args: object,
) -> Op:
    return Op(i, f"c{i}", kind, "proxy-1", start, dict(args), end, outcome, value)


def test_stale_read_found_and_clean_history_passes() -> None:
    push = op(1, "push", 0.0, 1.0, branch="b", commit=C2)
    stale = op(2, "read", 1.5, 2.0, value={"b": C1})
    fresh = op(3, "read", 1.5, 2.0, value={"b": C3})
    concurrent = op(4, "read", 0.5, 2.0, value={"b": C1})  # began before the ack: may miss it
    found = stale_reads([push, stale], graph())
    assert [a.op_ids for a in found] == [[1, 2]]
    assert stale_reads([push, fresh, concurrent], graph()) == []
    # An unacknowledged push constrains nothing.
    unknown = op(5, "push", 0.0, 1.0, UNKNOWN, branch="b", commit=C2)
    assert stale_reads([unknown, stale], graph()) == []


def test_monotonic_found_across_proxies_and_clean_history_passes() -> None:
    first = op(1, "read", 0.0, 1.0, value={"b": C2})
    back = op(2, "read", 1.5, 2.0, value={"b": C1})
    ahead = op(3, "read", 1.5, 2.0, value={"b": C3})
    overlapping = op(4, "read", 0.5, 2.0, value={"b": C1})
    assert [a.op_ids for a in monotonic_tips([first, back], graph())] == [[1, 2]]
    assert monotonic_tips([first, ahead, overlapping], graph()) == []
    unknown_commit = op(5, "read", 3.0, 4.0, value={"b": "f" * 40})
    assert "no client made" in monotonic_tips([unknown_commit], graph())[0].message


def test_lost_write_checks_every_replica() -> None:
    push = op(1, "push", 0.0, 1.0, branch="b", commit=C2)
    found = lost_writes([push], graph(), {"node-a": {"b": C3}, "node-b": {"b": C1}, "node-c": {}})
    assert sorted(a.message.split(":")[0] for a in found) == [
        "node-b",
        "node-c has no branch b (push #1 acknowledged)",
    ]
    assert lost_writes([push], graph(), {"node-a": {"b": C2}, "node-b": {"b": C3}}) == []


def test_linearizable_register() -> None:
    w1 = op(1, "cas-write", 0.0, 1.0, key="r", new=C1)
    r1 = op(2, "cas-read", 1.5, 2.0, value=C1, key="r")
    cas = op(3, "cas", 2.5, 3.0, key="r", old=C1, new=C2)
    r2 = op(4, "cas-read", 3.5, 4.0, value=C2, key="r")
    assert check_register([w1, r1, cas, r2]) == (True, [])
    # A read of the old value after the CAS completed: not linearizable.
    stale = op(5, "cas-read", 3.5, 4.0, value=C1, key="r")
    ok, window = check_register([w1, r1, cas, stale])
    assert ok is False and window
    # Concurrent operations may take either order.
    slow_write = op(6, "cas-write", 0.0, 5.0, key="r", new=C3)
    either = op(7, "cas-read", 1.0, 2.0, value=C3, key="r")
    assert check_register([w1, slow_write, either])[0] is True
    # An unknown write may take effect later (or never); a failed one never does.
    maybe = op(8, "cas-write", 0.0, None, UNKNOWN, key="r", new=C3)
    later = op(9, "cas-read", 6.0, 7.0, value=C3, key="r")
    assert check_register([w1, maybe, later])[0] is True
    failed = op(10, "cas", 0.0, 0.5, FAILED, key="r", old=None, new=C3)
    assert check_register([w1, failed, later])[0] is False
    # A CAS whose expected value was not there cannot have succeeded.
    wrong = op(11, "cas", 1.5, 2.0, key="r", old=C2, new=C3)
    assert check_register([w1, wrong])[0] is False


def test_metadata_agreement(tmp_path: Path) -> None:
    import sqlite3

    paths = {}
    for name, value in (("proxy-1", "x"), ("proxy-2", "x"), ("proxy-3", "y")):
        path = tmp_path / f"{name}.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
        conn.execute("INSERT INTO meta VALUES ('applied_index', 7)")
        conn.execute("CREATE TABLE storages (name TEXT, address TEXT)")
        conn.execute("INSERT INTO storages VALUES ('node-a', ?)", (value,))
        conn.commit()
        conn.close()
        paths[name] = path
    observer = MetadataObserver(paths, threading.Event())
    observer.sample()
    found = agreement(observer)
    assert len(found) == 1 and "applied index 7" in found[0].message
    assert observer.compared() == 1
    same = MetadataObserver({k: v for k, v in paths.items() if k != "proxy-3"}, threading.Event())
    same.sample()
    assert agreement(same) == []


def test_schedule_is_a_function_of_the_seed() -> None:
    a = [str(f) for f in schedule(42, 300, ALL_KINDS)]
    b = [str(f) for f in schedule(42, 300, ALL_KINDS)]
    c = [str(f) for f in schedule(43, 300, ALL_KINDS)]
    assert a == b and a != c
    assert {f.kind for f in schedule(42, 3000, ALL_KINDS)} == set(ALL_KINDS)
    assert all(f.at + f.duration <= 300 for f in schedule(42, 300, ALL_KINDS))


def test_history_around_marks_the_anomaly() -> None:
    history = History()
    a = history.invoke("c1", "push", "proxy-1", branch="b")
    history.complete(a, OK)
    history.event("nemesis", "start", fault="pause-node")
    text = history.around([a.id])
    assert text.startswith("> ") and "nemesis" in text


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(1024):
            conn.sendall(data)


def test_relay_blocks_one_way_and_heals() -> None:
    server, port = _echo_server()
    net = RelayNet(lambda: {}, seed=1)
    try:
        front = net.add_front("echo", port)
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as client:
            client.sendall(b"one")
            assert client.recv(16) == b"one"
            net.block("echo", "*")  # replies held: the request still arrives
            client.sendall(b"two")
            client.settimeout(0.5)
            try:
                got = client.recv(16)
            except TimeoutError:
                got = b""
            assert got == b""
            net.heal()
            client.settimeout(10)
            assert client.recv(16) == b"two"
        assert net.pairs == {("client", "echo"): 1}
    finally:
        net.close()
        server.close()


def test_metadata_generation_never_decreases(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
    conn.execute("INSERT INTO meta VALUES ('applied_index', 7)")
    conn.execute("CREATE TABLE replicas (repository_id TEXT, storage TEXT, generation INTEGER)")
    conn.execute("INSERT INTO replicas VALUES ('r', 'node-a', 3)")
    conn.commit()
    observer = MetadataObserver({"proxy-1": path}, threading.Event())
    observer.sample()
    conn.execute("UPDATE meta SET value = 8")
    conn.execute("UPDATE replicas SET generation = 4")
    conn.commit()
    observer.sample()
    assert agreement(observer) == []
    conn.execute("UPDATE meta SET value = 9")
    conn.execute("UPDATE replicas SET generation = 2")
    conn.commit()
    conn.close()
    observer.sample()
    found = agreement(observer)
    assert len(found) == 1 and "went from generation 4" in found[0].message
