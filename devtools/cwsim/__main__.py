"""`python -m devtools.cwsim serve|ctl ...` (the same as `contract-sync cw-sim ...`)."""

from __future__ import annotations

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["cw-sim", *sys.argv[1:]]))
