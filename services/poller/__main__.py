"""`python -m services.poller [--config tenants.toml] [--shard i/n]`."""

from __future__ import annotations

import sys

from services.poller.cli import main

if __name__ == "__main__":
    sys.exit(main())
