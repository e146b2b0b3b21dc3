"""Throwaway PKI for tests and the local control plane: a CA, server and client pairs.

Short-lived, generated per run into a temporary or state directory, never committed. The
server certificate names localhost and 127.0.0.1, which is where everything here listens.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TlsMaterial", "generate_tls_material", "write_signing_key"]


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files: a CA, a server pair signed by it, and a client pair signed by it."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def generate_tls_material(directory: Path, days: int = 1) -> TlsMaterial:
    """Write a throwaway CA, server (SAN localhost, 127.0.0.1) and client cert to `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
        )

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        builder("helmdeck-test-ca", name("helmdeck-test-ca"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = TlsMaterial(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    out.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for cn, cert_path, key_path, usage, sans in (
        (
            "localhost",
            out.server_cert,
            out.server_key,
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ),
        ("helmdeck-operator", out.client_cert, out.client_key, ExtendedKeyUsageOID.CLIENT_AUTH, []),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = builder(cn, ca_cert.subject, key).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if sans:
            cert = cert.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        signed = cert.sign(ca_key, hashes.SHA256())
        cert_path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
        write_key(key, key_path)
    return out


def write_signing_key(path: Path) -> Path:
    """A private EC key (P-256) in PEM, e.g. for signing ServiceAccount tokens (ES256)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            # SEC1 ("EC PRIVATE KEY"): kube-apiserver derives the public key only from this form.
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path
