"""The local stack runs only Kafka jars whose SHA-256 is in the checked list (issue 18, item 6)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from devtools.stack.kafka import CHECKSUMS_FILE, checksum_problems, read_checksums
from devtools.stack.local import DEFAULT_POM

LIST = DEFAULT_POM.with_name(CHECKSUMS_FILE)


def write_jars(directory: Path, jars: dict[str, bytes]) -> dict[str, str]:
    directory.mkdir()
    for name, content in jars.items():
        (directory / name).write_bytes(content)
    return {name: hashlib.sha256(content).hexdigest() for name, content in jars.items()}


def test_exactly_the_listed_jars_pass(tmp_path: Path) -> None:
    expected = write_jars(tmp_path / "libs", {"a.jar": b"a", "b.jar": b"b"})
    assert checksum_problems(tmp_path / "libs", expected) == []


def test_a_tampered_an_unlisted_and_a_missing_jar_are_each_refused(tmp_path: Path) -> None:
    expected = write_jars(tmp_path / "libs", {"a.jar": b"a", "evil.jar": b"x"})
    expected["a.jar"] = hashlib.sha256(b"original").hexdigest()
    del expected["evil.jar"]
    expected["gone.jar"] = hashlib.sha256(b"g").hexdigest()

    assert checksum_problems(tmp_path / "libs", expected) == [
        "a.jar: SHA-256 differs from the checked list",
        "evil.jar: not in the checked list",
        "gone.jar: listed but missing",
    ]


def test_the_checked_list_names_the_kafka_version_of_the_pom() -> None:
    listed = read_checksums(LIST)
    version = DEFAULT_POM.read_text(encoding="utf-8").split("<kafka.version>")[1].split("<")[0]
    assert f"kafka_2.13-{version}.jar" in listed
    assert all(len(digest) == 64 for digest in listed.values())
