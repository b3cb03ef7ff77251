"""TLS on every listener and on proxy->node and node->node channels (issue #7).

A CA and one server certificate (SANs 127.0.0.1 and localhost) are made here with
`cryptography`. Two real nodes and a real proxy run with TLS on: gRPC calls over TLS
reach the proxy and the nodes, the stock `git` pushes and clones over https
(GIT_SSL_CAINFO), the push is replicated node to node over TLS, and plaintext gRPC
and HTTP clients are refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, NodeProcess, ProxyProcess, run_git
from cluster.testing.git import commit_file, init_work_tree
from common.auth import bearer_metadata
from common.tls import ClientTls
from gitraft.v1 import server_pb2, server_pb2_grpc


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """A self-signed CA and a server certificate it signed for 127.0.0.1 / localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitraft test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    certs.key.chmod(0o600)
    return certs


def wait_tls_serving(address: str, ca: Path, timeout: float, proc: object) -> None:
    """Wait until grpc.health.v1 answers SERVING over TLS (the harness's wait is plain)."""
    deadline = time.monotonic() + timeout
    with ClientTls(str(ca)).sync_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline or getattr(proc, "poll", lambda: None)() is not None:
                raise TimeoutError(f"{address} did not serve over TLS")
            time.sleep(0.1)


@dataclass
class TlsNode(NodeProcess):
    certs: Certs | None = None

    def write_config(self) -> None:
        super().write_config()
        assert self.certs is not None
        with self.config_path.open("a") as f:
            f.write(
                f'tls_cert = "{self.certs.cert}"\ntls_key = "{self.certs.key}"\ntls_ca = "{self.certs.ca}"\n'
            )

    def wait_serving(self, timeout: float = 20.0) -> None:
        assert self.certs is not None and self.process is not None
        wait_tls_serving(self.address, self.certs.ca, timeout, self.process.proc)


@dataclass
class TlsProxy(ProxyProcess):
    certs: Certs | None = None

    def wait_serving(self, timeout: float = 60.0) -> None:
        assert self.certs is not None and self.process is not None
        wait_tls_serving(self.address, self.certs.ca, timeout, self.process.proc)


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, Certs]]:
    certs = make_certs(tmp_path / "certs")
    settings = {
        **TEST_PROXY_SETTINGS,
        "tls_cert": str(certs.cert),
        "tls_key": str(certs.key),
        "tls_ca": str(certs.ca),
        "node_tls": True,
    }
    cluster = LocalCluster(tmp_path / "c", proxies=1, nodes=2, proxy_settings=settings)
    try:
        for name, node in list(cluster.nodes.items()):
            cluster.nodes[name] = TlsNode(
                node.name, node.workdir, node.token, port=node.port, die_with_parent=True, certs=certs
            )
        for name, proxy in list(cluster.proxies.items()):
            cluster.proxies[name] = TlsProxy(proxy.spec, proxy.layout, die_with_parent=True, certs=certs)
        cluster.start()
        yield cluster, certs
    finally:
        cluster.close()


def server_info(channel: grpc.Channel, token: str) -> str:
    stub = server_pb2_grpc.ServerServiceStub(channel)
    reply = stub.ServerInfo(server_pb2.ServerInfoRequest(), metadata=bearer_metadata(token), timeout=20)
    return str(reply.storage_name)


def wait_replica_head(storage: Path, head: str, timeout: float = 60.0) -> None:
    """Wait until some repository under `storage` has `head` on main."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for repo in storage.rglob("*.git"):
            done = run_git("--git-dir", str(repo), "rev-parse", "refs/heads/main", cwd=storage, check=False)
            if done.stdout.strip() == head:
                return
        time.sleep(0.2)
    raise TimeoutError(f"no replica under {storage} reached {head}")


def test_tls_everywhere_serves_grpc_and_git_over_https_and_refuses_plaintext(
    tls_cluster: tuple[LocalCluster, Certs], tmp_path: Path
) -> None:
    cluster, certs = tls_cluster
    proxy = cluster.proxies["proxy-1"]
    client = ClientTls(str(certs.ca))

    # gRPC over TLS: the nodes directly, and through the proxy.
    for node in cluster.nodes.values():
        with client.sync_channel(node.address) as channel:
            assert server_info(channel, cluster.node_token) == node.name
    with client.sync_channel(proxy.address) as channel:
        server_info(channel, cluster.token)

    # The stock git over https through the gateway; the proxy reaches the primary over
    # TLS, and the other node fetches from it over TLS.
    env = {"GIT_SSL_CAINFO": str(certs.ca)}
    url = f"https://x:{cluster.token}@{proxy.http_addr}/tls/repo.git"
    work = init_work_tree(tmp_path / "work")
    head = commit_file(work, "a.txt", "over tls")
    run_git("push", "-q", url, "main", cwd=work, env=env)
    run_git("clone", "-q", url, str(tmp_path / "clone"), cwd=tmp_path, env=env)
    assert run_git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout.strip() == head
    for node in cluster.nodes.values():
        wait_replica_head(node.storage_path, head)

    # Plaintext clients are refused: gRPC cannot complete a call, git over http fails.
    for address, token in [(proxy.address, cluster.token)] + [
        (n.address, cluster.node_token) for n in cluster.nodes.values()
    ]:
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as info:
            server_info(channel, token)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    plain = run_git("ls-remote", url.replace("https://", "http://"), cwd=tmp_path, check=False)
    assert plain.returncode != 0
    # And a TLS client that does not trust the CA is refused too.
    untrusted = run_git("ls-remote", url, cwd=tmp_path, check=False)
    assert untrusted.returncode != 0 and "certificate" in untrusted.stderr.lower()
