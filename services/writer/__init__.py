"""The writer: the only writer of the contract store (PostgreSQL).

Consumes `contracts.records.v1`, `psa.agreements.v1` and `sync.commands.v1`; applies contract
records idempotently in batches, keeps the import catalog, per-client sync settings and local
edits (refusing edits of PSA-owned fields). Rules: `apply.py`; plan/events: `handlers.py`;
PostgreSQL: `store.py`; Kafka loop: `consumer.py`; wiring: `service.py`.
"""
