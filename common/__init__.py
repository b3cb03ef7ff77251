"""What storage nodes and proxies share: errors, auth, paths, config, logs.

Imports neither `cluster` nor `node`.
"""
