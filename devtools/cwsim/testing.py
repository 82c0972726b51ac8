"""Start a simulator for a test or benchmark: `with run_simulator(...) as sim:`.

`sim.base_url` is the ConnectWise API root (`http://127.0.0.1:PORT/v4_6_release/apis/3.0`), `sim.site_url`
the site root (for `/login/companyinfo/{company}`), `sim.company_id` / `public_key` / `private_key` /
`client_id` the credentials it accepts, `sim.auth_headers()` ready-made request headers, `sim.verify` what
to pass as httpx's `verify=` (an SSLContext trusting the throw-away certificate when `tls=True`), and
`sim.control` a `SimControl` for the `/_sim` API. The server runs in a background thread (default) or, with
`subprocess=True`, in its own Python process (honest benchmarks); it stops when the block exits.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import ssl
import subprocess as sp
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx

from devtools.cwsim.app import SimConfig, Simulator
from devtools.cwsim.client import SimControl
from devtools.cwsim.server import ServeOptions, build

READY = re.compile(r"cwsim ready url=(\S+)")


@dataclass(frozen=True)
class SimHandle:
    """A running simulator: where it is, what credentials it accepts, and its control client."""

    site_url: str
    base_url: str
    company_id: str
    public_key: str
    private_key: str
    client_id: str
    control: SimControl
    verify: bool | ssl.SSLContext
    simulator: Simulator | None  # the in-process instance (thread mode only)

    def __repr__(self) -> str:  # credentials never appear in reprs
        return f"SimHandle(base_url={self.base_url!r}, company_id={self.company_id!r})"

    def auth_headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.company_id}+{self.public_key}:{self.private_key}".encode()).decode()
        return {"Authorization": f"Basic {token}", "clientId": self.client_id}

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx.Client on `base_url` with the auth headers (caller closes it)."""
        return httpx.Client(base_url=self.base_url, headers=self.auth_headers(), verify=self.verify, **kwargs)  # type: ignore[arg-type]


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1/localhost via the `openssl` CLI. Returns (cert, key)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("tls=True needs the openssl command")
    cert, key = directory / "cert.pem", directory / "key.pem"
    sp.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def run_simulator(
    *,
    seed: int = 1,
    companies: int = 3,
    agreements_per_company: int = 4,
    additions_per_agreement: int = 3,
    anchor: date | None = None,
    requests_per_minute: int = 0,
    tls: bool = False,
    subprocess: bool = False,
    config: SimConfig | None = None,
    startup_timeout_s: float = 60.0,
) -> Iterator[SimHandle]:
    """Run a simulator on a free local port for the duration of the block (see the module docstring)."""
    cfg = dataclasses.replace(
        config or SimConfig(),
        seed=seed,
        companies=companies,
        agreements_per_company=agreements_per_company,
        additions_per_agreement=additions_per_agreement,
        anchor=anchor,
        requests_per_minute=requests_per_minute,
    )
    with ExitStack() as stack:
        cert = key = None
        verify: bool | ssl.SSLContext = True
        if tls:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cwsim-tls-")))
            cert, key = make_self_signed_cert(tmp)
            verify = ssl.create_default_context(cafile=str(cert))
        options = ServeOptions(
            host="127.0.0.1", port=0, tls_cert=str(cert) if cert else None, tls_key=str(key) if key else None
        )
        if subprocess:
            site_url = stack.enter_context(_subprocess_server(cfg, options, startup_timeout_s))
            simulator = None
        else:
            simulator, site_url = stack.enter_context(_thread_server(cfg, options, startup_timeout_s))
        control = SimControl(site_url, verify=verify)
        stack.callback(control.close)
        yield SimHandle(
            site_url=site_url,
            base_url=f"{site_url}/{cfg.codebase}/apis/3.0",
            company_id=cfg.company_id,
            public_key=cfg.public_key,
            private_key=cfg.private_key,
            client_id=cfg.client_id,
            control=control,
            verify=verify,
            simulator=simulator,
        )


@contextmanager
def _thread_server(
    cfg: SimConfig, options: ServeOptions, timeout_s: float
) -> Iterator[tuple[Simulator, str]]:
    simulator, server, sock = build(cfg, options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="cwsim", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    try:
        yield simulator, simulator.config.public_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def _subprocess_server(cfg: SimConfig, options: ServeOptions, timeout_s: float) -> Iterator[str]:
    args = [
        sys.executable,
        "-m",
        "devtools.cwsim",
        "serve",
        "--host",
        options.host,
        "--port",
        "0",
        "--seed",
        str(cfg.seed),
        "--companies",
        str(cfg.companies),
        "--agreements-per-company",
        str(cfg.agreements_per_company),
        "--additions-per-agreement",
        str(cfg.additions_per_agreement),
        "--requests-per-minute",
        str(cfg.requests_per_minute),
        "--company-id",
        cfg.company_id,
        "--client-id",
        cfg.client_id,
        "--codebase",
        cfg.codebase,
    ]
    if cfg.anchor:
        args += ["--anchor-date", cfg.anchor.isoformat()]
    if options.tls_cert and options.tls_key:
        args += ["--tls-cert", options.tls_cert, "--tls-key", options.tls_key]
    env = {**os.environ, "CWSIM_PUBLIC_KEY": cfg.public_key, "CWSIM_PRIVATE_KEY": cfg.private_key}
    proc = sp.Popen(args, stdout=sp.PIPE, stderr=None, text=True, env=env)
    try:
        site_url = _await_ready(proc, timeout_s)
        yield site_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except sp.TimeoutExpired:
            proc.kill()
            proc.wait()


def _await_ready(proc: sp.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    found: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = READY.search(line)
            if match and not found:
                found.append(match.group(1))

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not found:
        if proc.poll() is not None:
            raise RuntimeError(f"the simulator process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("the simulator process did not become ready")
        time.sleep(0.02)
    return found[0]
