"""Copy the topic registry (`schemas.topics.TOPICS`) into the chart as `files/topics.yaml`.

The chart's KafkaTopic resources and the `topics ensure` Job read that file, so the registry stays
the one source of truth for names, partitions, replicas and config.

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when the committed file is stale")
    args = parser.parse_args(argv)
    text = render_topics()
    if args.check:
        current = TOPICS_FILE.read_text(encoding="utf-8") if TOPICS_FILE.exists() else ""
        if current != text:
            print(f"{TOPICS_FILE.relative_to(ROOT)} is stale: run python deploy/helm/generate.py")
            return 1
        print(f"{TOPICS_FILE.relative_to(ROOT)} is current")
        return 0
    TOPICS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TOPICS_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {TOPICS_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
