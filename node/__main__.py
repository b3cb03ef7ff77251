"""`python -m node --config node.toml`: the same as `gitraft node --config node.toml`."""

from node.main import main

raise SystemExit(main())
