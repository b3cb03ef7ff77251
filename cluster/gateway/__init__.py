"""The git smart-HTTP gateway: `server` streams HTTP to a SmartHTTPService (a proxy or a
node); `http` holds its pure helpers (paths, auth, status mapping, preambles)."""
