"""Prometheus metrics of the proxy: `metrics` (counters and histograms of the request
path and loops) and `state_metrics` (gauges read from the replicated metadata)."""
