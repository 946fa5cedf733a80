"""A throwaway self-signed certificate so the real proxmoxer (HTTPS only) can talk to us."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_lock = threading.Lock()
_cached: tuple[bytes, bytes] | None = None


def _generate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "pvesim"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PVE Cluster Node (simulated)"),
    ])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(directory: Path) -> ssl.SSLContext:
    """An SSL server context whose cert/key files live in `directory` (the caller deletes it).

    The key pair is generated once per process: generating is cheap, but tests start many
    servers.
    """
    global _cached
    with _lock:
        if _cached is None:
            _cached = _generate()
        cert_pem, key_pem = _cached
    cert_file = directory / "pvesim.pem"
    key_file = directory / "pvesim.key"
    cert_file.write_bytes(cert_pem)
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def fingerprint() -> str:
    """SHA-256 fingerprint of the certificate, in `/nodes` ssl_fingerprint notation."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = _generate()
        cert_pem = _cached[0]
    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)
