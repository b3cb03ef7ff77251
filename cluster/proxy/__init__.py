"""The routing proxy: `python -m cluster.proxy --config proxy.toml`.

The request path: `router` (gRPC services) -> `coordinator` (one routing plan per call)
-> `reads` (accessors, maintenance) or `writes` (fenced writes), sharing `calls` ->
`forwarding` (calls to nodes over `nodes`' channels), with `barrier` (Raft read barrier),
`repositories` + `placement` (creation and replica choice) and `intent_renewal` (long
writes). `server.ProxyServer` wires these with the background loops, admin API, gateway
and metrics; `main.run_proxy` runs one until SIGTERM.
"""
