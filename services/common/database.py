"""Re-export of `services.common.db.migrate` under the import path the stack helper uses."""

from services.common.db import migrate

__all__ = ["migrate"]
