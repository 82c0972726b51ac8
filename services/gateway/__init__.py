"""The Sync API: the authenticated HTTP front door of contract-sync (docs/gateway.md).

Reads the PostgreSQL read model, publishes commands to `sync.commands.v1`, streams the token's
tenant's `sync.events.v1` as Server-Sent Events. Never writes the contract store.
"""
