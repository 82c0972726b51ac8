"""Security checks of a whole run: no credential anywhere, forged callbacks refused, TLS verified.

- `find_secrets`: every configured ConnectWise credential value (public key, private key, the
  Basic token built from them) searched in every captured log file and every record (value and
  headers) of every topic. A hit is a leak.
- `callback_checks`: a genuine simulator callback (captured by a throw-away receiver registered
  with the simulator) is accepted by the poller (control), and the same callback with a wrong
  signature, with a tampered body, with a `key_url` on a foreign host, and on a non-loopback plain
  HTTP host are all refused with 401.
- `tls_verification_default`: the ConnectWise client with default settings refuses a simulator
  serving a self-signed certificate, and accepts it once given that certificate (control).
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from devtools.demo.pipeline import SIM_COMPANY, SIM_PRIVATE_KEY, SIM_PUBLIC_KEY
from schemas.topics import TOPICS
from services.common.settings import KafkaSettings
from services.launcher.group import free_port


def configured_secrets() -> dict[str, str]:
    """The credential values the pipeline is configured with (devtools.demo.pipeline)."""
    token = base64.b64encode(f"{SIM_COMPANY}+{SIM_PUBLIC_KEY}:{SIM_PRIVATE_KEY}".encode()).decode()
    return {"public_key": SIM_PUBLIC_KEY, "private_key": SIM_PRIVATE_KEY, "basic_token": token}


@dataclass(frozen=True)
class Leak:
    where: str
    secret: str


def scan_logs(paths: Iterable[Path], secrets: dict[str, str]) -> tuple[int, list[Leak]]:
    """(lines scanned, leaks) over the given log files."""
    leaks: list[Leak] = []
    lines = 0
    needles = {name: value.encode() for name, value in secrets.items()}
    for path in paths:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                lines += 1
                for name, needle in needles.items():
                    if needle in line:
                        leaks.append(Leak(f"{path.name}:{number}", name))
    return lines, leaks


async def _scan_topics(kafka: KafkaSettings, secrets: dict[str, str], prefix: str) -> tuple[int, list[Leak]]:
    from chaos.fuzz import _read_all

    leaks: list[Leak] = []
    records = 0
    needles = {name: value.encode() for name, value in secrets.items()}
    for spec in TOPICS:
        for record in await _read_all(kafka, prefix + spec.name):
            records += 1
            blobs = [record.value or b"", record.key or b"", *(v for _, v in record.headers or [])]
            for name, needle in needles.items():
                if any(needle in blob for blob in blobs):
                    leaks.append(Leak(f"{spec.name}[{record.partition}]@{record.offset}", name))
    return records, leaks


def scan_topics(kafka: KafkaSettings, secrets: dict[str, str], prefix: str = "") -> tuple[int, list[Leak]]:
    """(records scanned, leaks) over every record of every registry topic (with `prefix`)."""
    return asyncio.run(_scan_topics(kafka, secrets, prefix))


def find_secrets(log_dir: Path, kafka: KafkaSettings, prefix: str = "") -> tuple[str, list[Leak]]:
    """Every credential value searched in the run's log files and every record of its topics."""
    secrets = configured_secrets()
    lines, log_leaks = scan_logs(sorted(log_dir.glob("*.log")), secrets)
    records, topic_leaks = scan_topics(kafka, secrets, prefix)
    return (
        f"{lines} log lines, {records} topic records scanned for {len(secrets)} secrets",
        log_leaks + topic_leaks,
    )


# ------------------------------------------------------------------------------------------------
# Callbacks


class _Receiver(BaseHTTPRequestHandler):
    inbox: queue.Queue[tuple[bytes, str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.inbox.put((body, self.headers.get("x-content-signature", "")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # silence
        return


def capture_genuine_callback(
    sim_api: httpx.Client, control: Any, company_id: int, timeout_s: float = 30.0
) -> tuple[bytes, str]:
    """Register a receiver with the simulator, make a change, return one signed delivery (body, signature)."""
    inbox: queue.Queue[tuple[bytes, str]] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"inbox": inbox})
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sim_api.post(
            "/system/callbacks",
            json={
                "url": f"http://127.0.0.1:{port}/hook",
                "objectId": company_id,
                "type": "agreement",
                "level": "company",
            },
        ).raise_for_status()
        control.create_agreement(company_id, name="callback probe", billAmount=1)
        body, signature = inbox.get(timeout=timeout_s)
        return body, signature
    finally:
        server.shutdown()
        server.server_close()


FLOOD = 150


def _floods(
    http: httpx.Client,
    callback_url: str,
    body: bytes,
    signature: str,
    forged: str,
    passed: list[str],
    failures: list[str],
) -> None:
    """A flood of forged callbacks, then of one genuine callback repeated: every answer is a refusal
    (401) or a rate limit (429), respectively an acceptance (202) or 429, and nothing else."""
    for what, sig, allowed in (("forged", forged, {401, 429}), ("genuine", signature, {202, 429})):
        statuses: dict[int, int] = {}
        for _ in range(FLOOD):
            answer = http.post(
                callback_url,
                content=body,
                headers={"content-type": "application/json", "x-content-signature": sig},
            )
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        ok = set(statuses) <= allowed and 429 in statuses
        (passed if ok else failures).append(
            f"flood of {FLOOD} {what} callbacks answered {dict(sorted(statuses.items()))}"
            + ("" if ok else f" (expected only {sorted(allowed)}, rate-limited)")
        )
        time.sleep(2.5)


def callback_checks(callback_url: str, body: bytes, signature: str) -> tuple[list[str], list[str]]:
    """(passed descriptions, failures). `callback_url` is the poller's `/callbacks/{tenant}`."""
    document = json.loads(body)
    evil = dict(
        document, Metadata={**document.get("Metadata", {}), "key_url": "https://evil.example/key?id=1"}
    )
    plain = dict(document, Metadata={**document.get("Metadata", {}), "key_url": "http://10.1.2.3/key?id=1"})
    tampered = dict(document, ID=int(document.get("ID", 1)) + 1)
    flipped = ("A" if signature[:1] != "A" else "B") + signature[1:]
    cases: list[tuple[str, bytes, str, int]] = [
        ("genuine signed callback accepted (control)", body, signature, 202),
        ("wrong signature refused", body, flipped, 401),
        ("missing signature refused", body, "", 401),
        ("tampered body with the original signature refused", json.dumps(tampered).encode(), signature, 401),
        ("key_url on a foreign host refused", json.dumps(evil).encode(), signature, 401),
        (
            "key_url over plain HTTP on a non-loopback host refused",
            json.dumps(plain).encode(),
            signature,
            401,
        ),
    ]
    key_url = str(document.get("Metadata", {}).get("key_url", ""))
    other_company = dict(
        document,
        Metadata={
            **document.get("Metadata", {}),
            "key_url": key_url.replace("companyName=", "companyName=x"),
        },
    )
    huge = dict(document, Entity="x" * (64 * 1024))
    cases += [
        ("key_url of another company refused", json.dumps(other_company).encode(), signature, 401),
        ("body over 64 KB refused", json.dumps(huge).encode(), signature, 413),
    ]
    passed: list[str] = []
    failures: list[str] = []
    with httpx.Client(timeout=30) as http:
        _floods(http, callback_url, body, signature, flipped, passed, failures)
        time.sleep(2.5)  # the source's rate-limit bucket refills before the single checks
        for what, payload, sig, status in cases:
            headers = {"content-type": "application/json"}
            if sig:
                headers["x-content-signature"] = sig
            answer = http.post(callback_url, content=payload, headers=headers)
            (passed if answer.status_code == status else failures).append(
                f"{what}: {answer.status_code}"
                + ("" if answer.status_code == status else f" (expected {status})")
            )
    return passed, failures


# ------------------------------------------------------------------------------------------------
# TLS


def tls_verification_default() -> tuple[list[str], list[str]]:
    """(passed, failures): default client vs a self-signed simulator, then with its CA (control)."""
    from devtools.cwsim.testing import run_simulator
    from services.poller.connectwise.client import ConnectWiseClient
    from services.poller.connectwise.config import ConnectWiseConnection
    from services.poller.connectwise.errors import ConnectWiseError

    passed: list[str] = []
    failures: list[str] = []
    with run_simulator(companies=1, agreements_per_company=1, additions_per_agreement=1, tls=True) as sim:
        connection = ConnectWiseConnection(
            site=sim.site_url,
            company_id=sim.company_id,
            public_key=SecretStr(sim.public_key),
            private_key=SecretStr(sim.private_key),
            client_id=SecretStr(sim.client_id),
            max_attempts=1,
        )
        if not connection.verify_tls:
            failures.append("ConnectWiseConnection.verify_tls defaults to False")

        async def call(ssl_context: Any) -> str:
            async with ConnectWiseClient(connection, ssl_context=ssl_context) as cw:
                try:
                    await cw.company_info()
                except ConnectWiseError as error:
                    return f"refused: {type(error).__name__}"
                return "accepted"

        default = asyncio.run(call(None))
        trusted = asyncio.run(call(sim.verify if not isinstance(sim.verify, bool) else None))
        (passed if default.startswith("refused") else failures).append(
            f"default client vs self-signed certificate: {default}"
        )
        (passed if trusted == "accepted" else failures).append(
            f"client given the certificate's CA: {trusted}"
        )
    return passed, failures
