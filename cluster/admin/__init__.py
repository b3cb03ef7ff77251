"""The proxy's own services: ClusterService (the operator API behind `gitraft ...`) and
TransactionService.

    service     ClusterAdmin (the servicer; one thin method per RPC) and Transactions
    views       metadata -> ClusterService messages; repository look-up by path
    status      ClusterStatus: proxies, nodes (health, load, disk), queue, data at risk
    operations  SetPrimary, AcceptDataloss, SetReplicationFactor, RemoveClusterRepository
    tracking    TrackRepository, ListUntrackedRepositories (asks the nodes' disks)
    checks      CheckCluster

Every state change is a Raft command of the metadata store; every answer is read after
a barrier, so it includes every change acknowledged anywhere before the call.
"""

from cluster.admin.service import ClusterAdmin, Transactions
from cluster.admin.views import cluster_repository

__all__ = ["ClusterAdmin", "Transactions", "cluster_repository"]
