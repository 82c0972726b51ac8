"""The fault-injection and bad-input suite (`make chaos`, `python -m chaos`).

It runs the whole pipeline (ConnectWise simulator, poller, mapper, writer as processes) on a
private Kafka + PostgreSQL of its own, injects faults during large imports and proves with an
independent checker that the contract store ends exactly right. See docs/chaos.md.
"""
