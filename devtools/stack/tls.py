"""The secured local stack's certificate authority and broker certificate (`cryptography`).

Layout under the stack directory `<dir>`:

    <dir>/tls/ca.pem        the CA certificate (clients' `KAFKA_SSL_CAFILE`, the broker's truststore)
    <dir>/tls/ca.key        the CA's private key (0600; signs the broker certificate only)
    <dir>/tls/broker.pem    the broker's PKCS#8 private key followed by its certificate chain (0600;
                            the broker's PEM keystore)

Guarantees: `ensure_tls` creates the files once and keeps them while the broker certificate is
valid for the next day and names the host; otherwise it issues a new broker certificate (the CA is
kept, so clients' CA file stays valid). The broker certificate names `localhost` and the host's IP,
so clients verify it with hostname checking on.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
BROKER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def broker_pem(self) -> Path:
        return self.directory / "broker.pem"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "contract-sync local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_ca(now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("contract-sync local CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _new_broker(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: str, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    if host != "127.0.0.1":
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("contract-sync local broker"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=BROKER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def _broker_certificate_current(files: TlsFiles, host: str, now: datetime.datetime) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(files.broker_pem.read_bytes())
    except (OSError, ValueError):
        return False
    if certificate.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    listed = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return host in listed or host in names.get_values_for_type(x509.DNSName)


def ensure_tls(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """The CA and a broker certificate for `host` under `directory`, created when missing or due
    (idempotent; see the module docstring). Returns the file paths."""
    files = TlsFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    if files.ca_cert.exists() and files.ca_key.exists():
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{files.ca_key} is not an EC private key")
        ca_key = loaded
    else:
        ca_key, ca = _new_ca(now)
        _write_private(
            files.ca_key,
            ca_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        files.broker_pem.unlink(missing_ok=True)
    if not _broker_certificate_current(files, host, now):
        key, certificate = _new_broker(ca_key, ca, host, now)
        _write_private(
            files.broker_pem,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            + certificate.public_bytes(serialization.Encoding.PEM)
            + ca.public_bytes(serialization.Encoding.PEM),
        )
    return files
