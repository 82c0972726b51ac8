"""Development tools, never shipped: the ConnectWise simulator, the local stack, the demo, doc generators.

Installed only in the development environment (`make venv`: `pip install -e ./devtools`, see
devtools/pyproject.toml); the production wheel and image carry `services` and `schemas` alone, and
import-linter forbids production code to import this package. The `contract-sync` CLI registers
the `stack`, `cw-sim` and `demo` sub-commands only when this package is importable.
"""
