"""TLS for the device endpoint: self-signed certificates on first start, and cipher profiles.

Devices need TLS 1.2 with an RSA certificate; some mbedTLS builds offer only RSA key exchange with CBC
suites, which the ``compat`` profile admits. TLS 1.0/1.1 are refused by both profiles. An ECDSA P-256
certificate can be served beside the RSA one (``tls_ecdsa``): OpenSSL keeps one certificate per key type in
a context and picks per client, so a client that offers ECDSA gets the cheap handshake (its signature costs a
fraction of RSA-2048's) and an RSA-only client still gets RSA.
"""

import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from thingport.private_files import narrow_existing, private_dir

CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
ECDSA_CERT_FILE = "tls-ecdsa-cert.pem"
ECDSA_KEY_FILE = "tls-ecdsa-key.pem"

PROFILES = {
    # forward-secret AEAD only (TLS 1.3 suites are always on)
    "modern": "ECDHE+AESGCM:ECDHE+CHACHA20",
    # plus RSA key exchange and CBC suites that constrained mbedTLS device builds offer
    "compat": "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:AES128-GCM-SHA256:AES256-GCM-SHA384"
    ":AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA",
}


# An RSA server key signs (ECDHE suites) and receives the premaster secret (the compat profile's RSA key
# exchange); an ECDSA key only signs. No keyCertSign: a leaf signs no certificates (OpenSSL and mbedTLS take
# a self-signed leaf as its own trust anchor without it).
def _server_key_usage(*, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, key_encipherment=key_encipherment, content_commitment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class CertificatePair:
    cert: Path
    key: Path

    def fingerprint(self) -> str:
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return cert.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class CertificateFiles(CertificatePair):
    """The RSA certificate every device can use, and the ECDSA one served beside it (None: RSA only)."""

    created: bool
    ecdsa: CertificatePair | None = None


def ensure_self_signed(data_dir: Path) -> CertificateFiles:
    """The data dir's self-signed RSA certificate and its ECDSA P-256 twin, each created on first use. The
    ECDSA pair exists even while it is not served, so operators can give devices both before turning it on."""
    rsa_pair, created = _ensure_leaf(data_dir, CERT_FILE, KEY_FILE, lambda: rsa.generate_private_key(65537, 2048))
    ecdsa_pair, _ = _ensure_leaf(data_dir, ECDSA_CERT_FILE, ECDSA_KEY_FILE,
                                 lambda: ec.generate_private_key(ec.SECP256R1()))
    return CertificateFiles(rsa_pair.cert, rsa_pair.key, created=created, ecdsa=ecdsa_pair)


def _ensure_leaf(data_dir: Path, cert_name: str, key_name: str,
                 new_key: Callable[[], rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]) -> tuple[CertificatePair, bool]:
    """The data dir's self-signed leaf in ``cert_name``/``key_name`` (key 0600), created when missing."""
    pair = CertificatePair(data_dir / cert_name, data_dir / key_name)
    if pair.cert.exists() and pair.key.exists():
        narrow_existing(pair.key)
        return pair, False
    private_dir(data_dir)
    key = new_key()
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "thingport self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    if host and host != "localhost":
        alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # a leaf: it can sign nothing, so a client that trusts it (as its CA file) trusts only this server
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_server_key_usage(key_encipherment=isinstance(key, rsa.RSAPrivateKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair, True


# TLS 1.3 session tickets sent after each full handshake. OpenSSL's default is 2, for clients that open two
# connections at once; a device keeps one session, and every resumption brings it a fresh ticket. Each
# ticket is sealed and sent on every connection, so one instead of two costs a device that reconnects per
# report about 4% less server CPU per connection (bench `bare` close: 662 -> 636 us, in one interleaved A/B
# of two servers).
TLS13_TICKETS = 1


def add_ecdsa(context: ssl.SSLContext, files: CertificateFiles) -> None:
    """Load the ECDSA pair beside the RSA one already in ``context``: OpenSSL keeps one certificate per key
    type and, per handshake, picks the one the client's signature algorithms and cipher suites admit."""
    if files.ecdsa is not None:
        context.load_cert_chain(files.ecdsa.cert, files.ecdsa.key)


def apply_profile(context: ssl.SSLContext, profile: str) -> None:
    """TLS 1.2 minimum, the profile's cipher suites and one TLS 1.3 session ticket on a server context."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(PROFILES[profile])
    context.num_tickets = TLS13_TICKETS
