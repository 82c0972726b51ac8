"""The Sync-from-PSA web console: server-rendered pages under `/ui/` on the gateway (docs/console.md)."""
