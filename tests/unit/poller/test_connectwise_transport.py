"""The ConnectWise client's default transport on real local sockets: keep-alive, pooling, and which
connection failures let a POST be sent again."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from services.poller.connectwise import ConnectWiseClient, ConnectWiseConnection, ConnectWiseTransportError

BODY = b'{"count": 7}'
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


class Server:
    """A minimal HTTP/1.1 server on a free loopback port that counts connections and requests."""

    def __init__(self, answer: Callable[[int], bytes | None]) -> None:
        self.answer = answer  # request number -> raw response, or None to drop the connection
        self.connections = 0
        self.requests = 0
        self.concurrent = 0
        self.max_concurrent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                await asyncio.sleep(0.01)
                response = self.answer(self.requests)
                if response is None:
                    return
                writer.write(response)
                await writer.drain()
        finally:
            self.concurrent -= 1
            writer.close()


@asynccontextmanager
async def serving(answer: Callable[[int], bytes | None]) -> AsyncIterator[tuple[Server, int]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        listener.close()


def connection(port: int, **options: object) -> ConnectWiseConnection:
    return ConnectWiseConnection.model_validate(
        {
            "site": f"http://127.0.0.1:{port}",
            "company_id": "acme",
            "public_key": "pub-key",
            "private_key": "priv-key",
            "client_id": "client-id",
            "codebase": "v4_6_release",
            "requests_per_minute": 1_000_000,
            "backoff_initial": 0.0,
            "backoff_max": 0.0,
            **options,
        }
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_sequential_requests_reuse_one_kept_alive_connection() -> None:
    async with serving(lambda _: OK) as (server, port), ConnectWiseClient(connection(port)) as client:
        for _ in range(20):
            assert await client.count_agreements() == 7
    assert server.requests == 20
    assert server.connections == 1


async def test_concurrent_requests_open_at_most_max_connections_and_reuse_them() -> None:
    async with (
        serving(lambda _: OK) as (server, port),
        ConnectWiseClient(connection(port, max_connections=4)) as client,
    ):
        counts = await asyncio.gather(*(client.count_agreements() for _ in range(40)))
    assert counts == [7] * 40
    assert server.max_concurrent <= 4
    assert server.connections <= 4


async def test_a_post_is_not_sent_again_when_the_server_dropped_the_connection_after_reading_it() -> None:
    async with (
        serving(lambda _: None) as (server, port),
        ConnectWiseClient(connection(port, max_attempts=3)) as client,
    ):
        with pytest.raises(ConnectWiseTransportError):
            await client.create_callback("https://example.test/hook")
    assert server.requests == 1


async def test_an_idempotent_get_is_sent_again_when_the_server_dropped_the_connection() -> None:
    async with (
        serving(lambda n: None if n == 1 else OK) as (server, port),
        ConnectWiseClient(connection(port, max_attempts=3)) as client,
    ):
        assert await client.count_agreements() == 7
    assert server.requests == 2  # sent again (by aiohttp itself or by the client's retry)


async def test_a_post_is_retried_when_no_connection_could_be_made() -> None:
    async with ConnectWiseClient(connection(free_port(), max_attempts=3)) as client:
        with pytest.raises(ConnectWiseTransportError, match="after 3 attempt"):
            await client.create_callback("https://example.test/hook")
        assert client.stats.retries == 2
