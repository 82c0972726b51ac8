"""Run several contract-sync processes as one group: `contract-sync run` and the demo.

A composition root like `services.cli`: it starts the services as separate processes by their
commands and never imports them.
"""

from services.launcher.group import ProcessGroup, ServiceProcess, free_port, wait_until

__all__ = ["ProcessGroup", "ServiceProcess", "free_port", "wait_until"]
