"""Run a simulator under uvicorn: bind first (so port 0 works and hrefs name the real port), then serve."""

from __future__ import annotations

import dataclasses
import logging
import socket
from dataclasses import dataclass

import uvicorn

from devtools.cwsim.app import SimConfig, Simulator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8089
    tls_cert: str | None = None
    tls_key: str | None = None
    public_url: str | None = None  # default: scheme://host:bound_port
    log_level: str = "warning"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build(config: SimConfig, options: ServeOptions) -> tuple[Simulator, uvicorn.Server, socket.socket]:
    """Bind the socket, build the simulator (its public URL names the bound port) and the uvicorn server."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    sock = bind(options.host, options.port)
    port = sock.getsockname()[1]
    scheme = "https" if options.tls_cert else "http"
    host = options.host if options.host not in ("0.0.0.0", "::") else "127.0.0.1"
    public_url = options.public_url or f"{scheme}://{host}:{port}"
    simulator = Simulator(dataclasses.replace(config, public_url=public_url))
    uv_config = uvicorn.Config(
        simulator,
        log_level=options.log_level,
        log_config=None,  # uvicorn logs through the simulator's handler (services.common.logging)
        access_log=False,
        lifespan="on",
        http="httptools",
        loop="uvloop",
        ssl_certfile=options.tls_cert,
        ssl_keyfile=options.tls_key,
        timeout_keep_alive=30,
    )
    return simulator, uvicorn.Server(uv_config), sock
