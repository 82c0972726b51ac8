"""Copy the topic registry (`schemas.topics.TOPICS`) into the chart as `files/topics.yaml`, and the
Kafka ACLs derived from it (`services.common.kafka_acls`) as `files/kafka-users.yaml`.

The chart's KafkaTopic and KafkaUser resources and the `topics ensure` Job read those files, so the
registry stays the one source of truth for names, partitions, replicas, config and permissions.

    python deploy/helm/generate.py           # write the file
    python deploy/helm/generate.py --check   # exit 1 when the committed file is stale

Deterministic: the same registry always gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TOPICS_FILE = ROOT / "deploy" / "helm" / "contract-sync" / "files" / "topics.yaml"
USERS_FILE = ROOT / "deploy" / "helm" / "contract-sync" / "files" / "kafka-users.yaml"

HEADER = (
    "# GENERATED from schemas/topics.py by `python deploy/helm/generate.py`; do not edit.\n"
    "# The chart's KafkaTopic resources are made from this list.\n"
)


def render_topics() -> str:
    """The YAML text of the registry's topics, in registry order."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from schemas.topics import TOPICS

    topics = [
        {
            "name": spec.name,
            "description": spec.description,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "config": {key: str(value) for key, value in sorted(spec.config.items())},
        }
        for spec in TOPICS
    ]
    body = yaml.safe_dump({"topics": topics}, sort_keys=False, default_flow_style=False, width=120)
    return HEADER + body


def render_users() -> str:
    """The YAML text of the per-service KafkaUser specs (name, ACLs), from the registry."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from services.common.kafka_acls import acl_bindings, strimzi_users

    users = [
        {"name": user["metadata"]["name"], "acls": user["spec"]["authorization"]["acls"]}
        for user in strimzi_users(acl_bindings())
    ]
    header = HEADER.replace(
        "KafkaTopic resources are made from this list", "KafkaUser resources are made from this list"
    )
    return header + yaml.safe_dump({"users": users}, sort_keys=False, default_flow_style=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when the committed file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in ((TOPICS_FILE, render_topics()), (USERS_FILE, render_users())):
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                print(f"{path.relative_to(ROOT)} is stale: run python deploy/helm/generate.py")
                stale = 1
            else:
                print(f"{path.relative_to(ROOT)} is current")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
