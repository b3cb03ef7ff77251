"""The storage node: a gRPC server over one storage directory of bare repositories.

It knows nothing of the cluster (never imports `cluster`).
"""
