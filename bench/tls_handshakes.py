"""Server CPU per full TLS handshake, RSA-2048 against ECDSA P-256, on the device endpoint.

Starts ``bench/bare_app.py`` (the server's own TLS set-up: ``build_config``, the TLS profile, uvloop) twice
on one self-signed pair, once RSA only and once with ``THINGPORT_TLS_ECDSA=true``, and drives full
handshakes (no resumption: every connection is new, sends one request and reads the reply) from this
process, interleaving the variants round by round. The figure is the server process's CPU time (user +
system, from /proc) per connection: robust on a shared VM, unlike handshakes per second, which here mostly
measure the Python client. Run: ``python bench/tls_handshakes.py [--connections 400] [--rounds 3]``.
"""

import argparse
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUEST = b"POST /topic/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"

# (label, server has the ECDSA pair, client's highest TLS version, client's TLS 1.2 suites)
VARIANTS = [
    ("rsa     tls1.3 (server without ECDSA)", False, None, None),
    ("ecdsa   tls1.3 (server with ECDSA)", True, None, None),
    ("rsa     tls1.2 ECDHE-RSA (server with ECDSA)", True, ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"),
    ("ecdsa   tls1.2 ECDHE-ECDSA (server with ECDSA)", True, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _start(data_dir: Path, ecdsa: bool) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**os.environ, "THINGPORT_TLS_ECDSA": "true" if ecdsa else "false", "THINGPORT_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_app.py")), "--port", str(port),
                             "--data-dir", str(data_dir)], env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("bare_app did not start")


def _client(max_version: ssl.TLSVersion | None, ciphers: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _run(port: int, ctx: ssl.SSLContext, connections: int) -> str:
    kind = ""
    for _ in range(connections):
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as tls:
            tls.sendall(REQUEST)
            while tls.recv(4096):
                pass
            assert not tls.session_reused
            kind = tls.cipher()[0] if tls.cipher() else "?"
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=400, help="full handshakes per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        servers = {ecdsa: _start(data_dir, ecdsa) for ecdsa in (False, True)}  # one pair, created by the first
        try:
            per_conn: dict[str, list[float]] = {label: [] for label, *_ in VARIANTS}
            rates: dict[str, list[float]] = {label: [] for label, *_ in VARIANTS}
            for _ in range(args.rounds):
                for label, ecdsa, max_version, ciphers in VARIANTS:
                    proc, port = servers[ecdsa]
                    ctx = _client(max_version, ciphers)
                    _run(port, ctx, 20)  # warm-up
                    cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
                    _run(port, ctx, args.connections)
                    cpu, wall = _cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
                    per_conn[label].append(cpu / args.connections * 1e6)
                    rates[label].append(args.connections / wall)
            print(f"{'variant':48} {'server CPU us/conn (per round)':>36} {'conn/s (1 Python client)':>26}")
            for label, *_ in VARIANTS:
                rounds = " ".join(f"{v:6.0f}" for v in per_conn[label])
                print(f"{label:48} {min(per_conn[label]):8.0f} min [{rounds}] {max(rates[label]):14.0f}")
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
