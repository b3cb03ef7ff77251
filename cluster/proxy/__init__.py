"""The routing proxy process: `python -m cluster.proxy --config proxy.toml`.

`server.ProxyServer` wires the roles together (router, coordinator, replicator,
health, intents, admin, gateway, metrics); `main.run_proxy` runs one until SIGTERM.
"""
