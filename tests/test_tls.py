"""TLS of the device endpoint: self-signed RSA by default, TLS 1.2 minimum, the compat cipher profile."""

import hashlib
import http.client
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support import ServerProcess, wait_until
from thingport.runtime.tls import ensure_self_signed


def client_context(*, max_version: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    """A device's client context that trusts any certificate and offers TLS up to ``max_version``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if max_version:
        if max_version < ssl.TLSVersion.TLSv1_2:
            ctx.minimum_version = max_version
        ctx.maximum_version = max_version
    return ctx


def handshake(port: int, *, max_version: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return client_context(max_version=max_version, ciphers=ciphers).wrap_socket(sock)


def test_self_signed_rsa_certificate_and_its_fingerprint_are_printed(server: ServerProcess) -> None:
    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    with handshake(server.port) as tls:
        der = tls.getpeercert(binary_form=True)
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    printed = ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2))
    assert printed in server.output()
    assert str(server.cert) in server.output()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_below_1_2_is_refused(server: ServerProcess, version: ssl.TLSVersion) -> None:
    # the client is made willing (SECLEVEL=0), so the refusal can only come from the server
    with pytest.raises(ssl.SSLError, match="(?i)alert protocol version|unexpected_eof"):
        handshake(server.port, max_version=version, ciphers="DEFAULT:@SECLEVEL=0").close()


def test_plain_http_gets_no_http_answer(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"HTTP/")


def test_modern_profile_refuses_rsa_key_exchange_cbc(server: ServerProcess) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(server.port, max_version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA256").close()


def test_compat_profile_admits_mbedtls_style_rsa_cbc_suite(tmp_path: Path) -> None:
    compat = ServerProcess(tmp_path / "data", args=("--tls-profile", "compat")).start()
    try:
        with handshake(compat.port, max_version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA256") as tls:
            assert tls.cipher()[0] == "AES128-SHA256"
            assert tls.version() == "TLSv1.2"
    finally:
        compat.stop()


def _connect_and_request(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
    """A connection that sends one request and reads the reply (a TLS 1.3 client takes its tickets in as it
    reads), left open so that its session can be read."""
    tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), session=session)
    tls.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while tls.recv(4096):
        pass
    return tls


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_a_reconnecting_device_resumes_its_tls_session(server: ServerProcess, version: ssl.TLSVersion) -> None:
    ctx = client_context(max_version=version)
    tickets: list[int] = []

    def count_tickets(conn: object, direction: str, v: object, content_type: object, msg_type: object,
                      data: bytes) -> None:
        if direction == "read" and msg_type == ssl._TLSMessageType.NEWSESSION_TICKET:  # type: ignore[attr-defined]
            tickets.append(1)

    ctx._msg_callback = count_tickets  # type: ignore[attr-defined]
    first = _connect_and_request(server.port, ctx)
    assert first.version() == version.name.replace("v1_", "v1.")
    assert not first.session_reused
    session = first.session
    first.close()
    assert tickets == [1]  # one ticket per full handshake (TLS 1.2: the session ticket extension's one)
    second = _connect_and_request(server.port, ctx, session=session)
    try:
        assert second.session_reused
    finally:
        second.close()


def test_given_certificate_is_used(tmp_path: Path) -> None:
    files = ensure_self_signed(tmp_path / "certs")
    srv = ServerProcess(tmp_path / "data", args=("--tls-cert", str(files.cert), "--tls-key", str(files.key))).start()
    try:
        with handshake(srv.port) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der == x509.load_pem_x509_certificate(files.cert.read_bytes()).public_bytes(Encoding.DER)
        assert not (tmp_path / "data" / "tls-cert.pem").exists()
    finally:
        srv.stop()



def _auth_code(port: int, forwarded_for: str) -> int:
    """A (badly signed) /auth over plain HTTP, as a TLS proxy forwards it; waits for the server to listen."""
    body = json.dumps(
        {
            "productKey": "a1pk",
            "deviceName": "dev-1",
            "clientId": "c1",
            "version": "default",
            "timestamp": str(int(time.time() * 1000)),
            "signmethod": "hmacsha256",
            "sign": "0" * 64,
        }
    ).encode()

    def code() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("POST", "/auth", body, {"Content-Type": "application/json", "X-Forwarded-For": forwarded_for})
            return json.loads(conn.getresponse().read())["code"]
        finally:
            conn.close()

    return wait_until(code, "the server answering /auth over plain HTTP", 20, 0.1, ignore=(ConnectionRefusedError,),
                      accept=lambda _: True)


def test_behind_a_tls_proxy_the_device_port_speaks_http_and_trusts_the_proxys_forwarded_address(
    tmp_path: Path,
) -> None:
    """TLS terminated by a proxy: plain HTTP on the device port, the device's address taken from the trusted
    proxy's X-Forwarded-For, so per-address auth limits see devices, not the proxy."""
    env = {"THINGPORT_TLS_OFFLOAD": "true", "THINGPORT_SOURCE_AUTH_BURST": "2",
           "THINGPORT_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    server = ServerProcess(tmp_path / "data", env=env)
    server.data_dir.mkdir(parents=True)
    server.proc = subprocess.Popen(
        [sys.executable, "-m", "thingport", "serve", "--host", "127.0.0.1", "--port", str(server.port),
         "--api-port", str(server.api_port), "--data-dir", str(server.data_dir)],
        env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # a burst of 2 per source address: one device's third attempt is throttled ...
        assert [_auth_code(server.port, "203.0.113.1") for _ in range(3)] == [20000, 20000, 40000]
        # ... and another device behind the same proxy is not
        assert _auth_code(server.port, "203.0.113.2") == 20000
    finally:
        server.stop()


def test_the_self_signed_certificate_is_a_server_leaf_that_clients_can_trust(server: ServerProcess) -> None:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign and not usage.value.crl_sign
    # a client that trusts it as its CA file, hostname checked, strict X.509 checks on (Python 3.13's default)
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.getpeercert()["subject"] == ((("commonName", "thingport self-signed"),),)
    # and OpenSSL's own verifier (curl, most device SDKs on Linux) takes it as its own trust anchor
    verified = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver",
                               "-CAfile", str(server.cert), str(server.cert)], capture_output=True, text=True)
    assert verified.returncode == 0 and verified.stdout.strip().endswith("OK"), verified.stdout + verified.stderr


def _mbedtls_handshake(ca_pem: str, port: int, ciphers: tuple[str, ...] | None = None) -> None:
    """A TLS 1.2 handshake by mbedTLS (the devices' TLS stack), trusting only ``ca_pem``, naming localhost,
    offering ``ciphers`` (default: mbedTLS's own list, ECDSA suites first)."""
    from mbedtls import tls as mbed_tls
    from mbedtls import x509 as mbed_x509

    conf = mbed_tls.TLSConfiguration(
        trust_store=mbed_tls.TrustStore([mbed_x509.CRT.from_PEM(ca_pem)]), validate_certificates=True,
        ciphers=ciphers,
        lowest_supported_version=mbed_tls.TLSVersion.TLSv1_2, highest_supported_version=mbed_tls.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        sock = mbed_tls.ClientContext(conf).wrap_socket(raw, server_hostname="localhost")
        deadline = time.monotonic() + 5
        while True:
            try:
                sock.do_handshake()
                return
            except (mbed_tls.WantReadError, mbed_tls.WantWriteError):
                assert time.monotonic() < deadline, "the mbedTLS handshake did not finish"


def _mbedtls_error() -> type[Exception]:
    try:
        from mbedtls.exceptions import TLSError
    except ImportError:  # pragma: no cover - a test dependency
        if os.environ.get("CI") == "true":
            pytest.fail("python-mbedtls (a test dependency) is missing: the devices' TLS stack goes untested")
        pytest.skip("python-mbedtls (a test dependency) is not installed")
    return TLSError


def test_an_mbedtls_client_trusts_the_leaf_as_its_ca_and_nothing_else(server: ServerProcess, tmp_path: Path) -> None:
    TLSError = _mbedtls_error()

    _mbedtls_handshake(server.cert.read_text(), server.port)
    other = ensure_self_signed(tmp_path / "other")  # a leaf of the same shape, another key: refused
    with pytest.raises(TLSError, match="(?i)verification failed"):
        _mbedtls_handshake(other.cert.read_text(), server.port)


# --- the ECDSA P-256 certificate beside the RSA one ------------------------------------------------------

ECDSA_ONLY = "ECDHE-ECDSA-AES128-GCM-SHA256"  # TLS 1.2: the suite admits an ECDSA certificate only
RSA_ONLY = "ECDHE-RSA-AES128-GCM-SHA256"  # TLS 1.2: an RSA-only device (some mbedTLS builds)


@pytest.fixture(scope="module")
def ecdsa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with ``tls_ecdsa`` on (set through the environment, as an operator would)."""
    proc = ServerProcess(tmp_path_factory.mktemp("ecdsa") / "data", env={"THINGPORT_TLS_ECDSA": "true"}).start()
    try:
        yield proc
    finally:
        proc.stop()


def _served(port: int, *, max_version: ssl.TLSVersion | None = None, ciphers: str | None = None) -> bytes:
    with handshake(port, max_version=max_version, ciphers=ciphers) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(cert: Path) -> bytes:
    return x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("max_version", "ciphers", "expected"),
    [
        (None, None, "tls-ecdsa-cert.pem"),  # a modern client (TLS 1.3, ECDSA signatures offered first)
        (ssl.TLSVersion.TLSv1_2, None, "tls-ecdsa-cert.pem"),
        (ssl.TLSVersion.TLSv1_2, ECDSA_ONLY, "tls-ecdsa-cert.pem"),
        (ssl.TLSVersion.TLSv1_2, RSA_ONLY, "tls-cert.pem"),
    ],
    ids=["tls1.3-default", "tls1.2-default", "tls1.2-ecdsa-only", "tls1.2-rsa-only"],
)
def test_with_tls_ecdsa_each_client_gets_the_certificate_it_can_use(
    ecdsa_server: ServerProcess, max_version: ssl.TLSVersion | None, ciphers: str | None, expected: str
) -> None:
    served = _served(ecdsa_server.port, max_version=max_version, ciphers=ciphers)
    assert served == _der(ecdsa_server.data_dir / expected)
    assert "also serving ECDSA certificate" in ecdsa_server.output()


def test_without_tls_ecdsa_only_the_rsa_certificate_is_served(server: ServerProcess) -> None:
    """The default: existing devices, which trust tls-cert.pem, see no change; an ECDSA-only client is refused.
    The ECDSA pair is created all the same (0600), so devices can be given it before it is turned on."""
    assert _served(server.port) == _der(server.cert)
    with pytest.raises(ssl.SSLError):
        _served(server.port, max_version=ssl.TLSVersion.TLSv1_2, ciphers=ECDSA_ONLY)
    assert stat.S_IMODE((server.data_dir / "tls-ecdsa-key.pem").stat().st_mode) == 0o600
    assert (server.data_dir / "tls-ecdsa-cert.pem").exists()


def test_the_ecdsa_leaf_is_a_p256_server_leaf_like_the_rsa_one(ecdsa_server: ServerProcess) -> None:
    rsa_cert = x509.load_pem_x509_certificate(ecdsa_server.cert.read_bytes())
    ecdsa_path = ecdsa_server.data_dir / "tls-ecdsa-cert.pem"
    cert = x509.load_pem_x509_certificate(ecdsa_path.read_bytes())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    assert cert.subject == rsa_cert.subject
    san = x509.SubjectAlternativeName
    assert cert.extensions.get_extension_for_class(san) == rsa_cert.extensions.get_extension_for_class(san)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_cert_sign
    verified = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver",
                               "-CAfile", str(ecdsa_path), str(ecdsa_path)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # a client that trusts both files (one CA file, concatenated) verifies whichever it is served
    both = ecdsa_server.data_dir.parent / "both.pem"
    both.write_bytes(ecdsa_server.cert.read_bytes() + ecdsa_path.read_bytes())
    for ciphers in (ECDSA_ONLY, RSA_ONLY):
        ctx = ssl.create_default_context(cafile=str(both))
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        with socket.create_connection(("127.0.0.1", ecdsa_server.port), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                assert tls.cipher() is not None and tls.cipher()[0] == ciphers


def test_with_tls_ecdsa_mbedtls_devices_must_trust_the_ecdsa_leaf_or_offer_rsa_suites_only(
    ecdsa_server: ServerProcess,
) -> None:
    """Why ``tls_ecdsa`` is off by default: an mbedTLS device that offers ECDSA suites (mbedTLS's default) but
    trusts only tls-cert.pem is served the ECDSA leaf and fails. One that trusts tls-ecdsa-cert.pem, or that
    offers RSA suites only, works. (Both files in one CA file is shown with OpenSSL above: python-mbedtls's
    TrustStore checks against its first certificate only.)"""
    TLSError = _mbedtls_error()
    rsa_pem = ecdsa_server.cert.read_text()
    ecdsa_pem = (ecdsa_server.data_dir / "tls-ecdsa-cert.pem").read_text()
    with pytest.raises(TLSError, match="(?i)verification failed"):
        _mbedtls_handshake(rsa_pem, ecdsa_server.port)
    _mbedtls_handshake(ecdsa_pem, ecdsa_server.port)
    _mbedtls_handshake(rsa_pem, ecdsa_server.port, ciphers=("TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256",))


def test_self_signed_pairs_are_reused_and_their_keys_private(tmp_path: Path) -> None:
    os.umask(old := os.umask(0))  # whatever the umask, the keys are the owner's only
    try:
        first = ensure_self_signed(tmp_path / "certs")
    finally:
        os.umask(old)
    assert first.created and first.ecdsa is not None
    for key in (first.key, first.ecdsa.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    os.chmod(first.ecdsa.key, 0o644)  # a key copied in readable by others is narrowed on the next start
    again = ensure_self_signed(tmp_path / "certs")
    assert not again.created and again.ecdsa is not None
    assert (again.fingerprint(), again.ecdsa.fingerprint()) == (first.fingerprint(), first.ecdsa.fingerprint())
    assert stat.S_IMODE(first.ecdsa.key.stat().st_mode) == 0o600


def test_given_ecdsa_certificate_is_served_beside_the_given_rsa_one(tmp_path: Path) -> None:
    rsa_files = ensure_self_signed(tmp_path / "rsa")
    given = ensure_self_signed(tmp_path / "ecdsa").ecdsa
    assert given is not None
    srv = ServerProcess(tmp_path / "data", args=(
        "--tls-cert", str(rsa_files.cert), "--tls-key", str(rsa_files.key),
        "--tls-ecdsa-cert", str(given.cert), "--tls-ecdsa-key", str(given.key))).start()
    try:
        assert _served(srv.port) == _der(given.cert)
        assert _served(srv.port, max_version=ssl.TLSVersion.TLSv1_2, ciphers=RSA_ONLY) == _der(rsa_files.cert)
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "args",
    [("--tls-ecdsa",), ("--tls-ecdsa-cert", "{ecdsa_cert}")],
    ids=["ecdsa-on-without-a-pair", "ecdsa-cert-without-key"],
)
def test_an_ecdsa_option_that_cannot_be_served_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    files = ensure_self_signed(tmp_path / "certs")
    assert files.ecdsa is not None
    run = subprocess.run(
        [sys.executable, "-m", "thingport", "serve", "--data-dir", str(tmp_path / "data"),
         "--tls-cert", str(files.cert), "--tls-key", str(files.key),
         *(a.format(ecdsa_cert=files.ecdsa.cert) for a in args)],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "tls-ecdsa" in run.stderr
