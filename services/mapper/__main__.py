"""`python -m services.mapper`: the same as `contract-sync mapper`."""

from __future__ import annotations

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["mapper", *sys.argv[1:]]))
