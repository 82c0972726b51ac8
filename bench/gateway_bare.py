"""The benchmark's baseline: a bare ASGI endpoint (no framework, no auth, no view building) that runs
the gateway's catalog SQL for `?tenant=&client=` and answers the rows as JSON.

    python -m bench.gateway_bare --port 18090      (DATABASE_URL as for the gateway)
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn
from psycopg.rows import dict_row

from services.common.settings import DatabaseSettings
from services.gateway.readmodel import CATALOG_SQL, new_pool


def _default(value: Any) -> Any:
    return str(value)


def build(database_url: str) -> Any:
    pool = new_pool(database_url, 8)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await pool.open()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await pool.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        query = parse_qs(scope["query_string"].decode())
        params = {"tenant": query.get("tenant", [""])[0], "client": query.get("client", [""])[0]}
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(CATALOG_SQL, params, prepare=True)
            rows = await cur.fetchall()
        body = orjson.dumps({"items": rows}, default=_default)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(DatabaseSettings().url), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, lifespan="on")  # fmt: skip


if __name__ == "__main__":
    main()
