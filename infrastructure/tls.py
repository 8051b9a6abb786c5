"""A development PKI for mutual TLS between the services, and the SSL contexts that use it.

Layout of a PKI directory (``clinic certs init`` writes it)::

    ca.pem, ca-key.pem               the clinic's own CA (EC P-256), trusted by every service
    <service>.pem, <service>-key.pem one certificate per service: CN and SAN DNS = the service
                                     name, plus DNS:localhost and IP:127.0.0.1; serverAuth and
                                     clientAuth, so the same pair serves and calls

Private keys are written 0600. This is a *development* PKI: production certificates come from
the platform's issuer, in the same layout, and nothing else changes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVICES = ("registry", "scheduling", "consultations", "booking", "notifications", "gateway", "auth")
CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
CA_COMMON_NAME = "Clinic Development CA"
MAX_DAYS = 3650
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CLOCK_SKEW = dt.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey


class PkiError(Exception):
    """The PKI directory is missing, inconsistent or cannot be written; the message says what to do."""


@dataclass(frozen=True)
class Pki:
    """Where a PKI's files are. ``created`` lists the files the last ``create_dev_pki`` wrote."""

    directory: Path
    services: tuple[str, ...] = DEFAULT_SERVICES
    created: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_FILE

    @property
    def ca_key_file(self) -> Path:
        return self.directory / CA_KEY_FILE

    def cert_file(self, service: str) -> Path:
        return self.directory / f"{_checked_name(service)}.pem"

    def key_file(self, service: str) -> Path:
        return self.directory / f"{_checked_name(service)}-key.pem"

    @classmethod
    def open(cls, directory: Path, services: Sequence[str] = DEFAULT_SERVICES) -> Pki:
        """An existing PKI (nothing is written); fails if the CA or a service's pair is missing."""
        pki = cls(Path(directory), tuple(services))
        missing = [p.name for p in (pki.ca_file, *(f for s in services for f in (pki.cert_file(s), pki.key_file(s))))
                   if not p.is_file()]
        if missing:
            raise PkiError(f"{directory}: missing {', '.join(missing)}; run `clinic certs init --dir {directory}`")
        return pki


def create_dev_pki(directory: Path, services: Sequence[str] = DEFAULT_SERVICES, days: int = 365,
                   *, force: bool = False) -> Pki:
    """Create (or complete) a development PKI in ``directory``.

    Idempotent: an existing CA is kept, and so is every service pair it issued that has not
    expired; missing or expired pairs are (re-)issued by that CA. A pair from another CA, or a key
    that does not match its certificate, is an error. ``force=True`` replaces the CA and re-issues
    every service certificate. A new CA lives ``max(days, 730)`` days; service certificates
    ``days``, and never past the CA.
    """
    directory = Path(directory)
    services = tuple(dict.fromkeys(_checked_name(s) for s in services))
    if not 1 <= days <= MAX_DAYS:
        raise PkiError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    if directory.exists() and not directory.is_dir():
        raise PkiError(f"{directory} exists and is not a directory")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise PkiError(f"cannot create {directory}: {error.strerror}") from None
    pki = Pki(directory, services)
    created: list[str] = []
    now = dt.datetime.now(dt.UTC)

    if force or not (pki.ca_file.exists() or pki.ca_key_file.exists()):
        ca_cert, ca_key = create_ca(CA_COMMON_NAME, days=max(days, 2 * 365), now=now)
        _write_key(pki.ca_key_file, ca_key)
        _write_cert(pki.ca_file, ca_cert)
        created += [CA_FILE, CA_KEY_FILE]
    else:
        ca_cert, ca_key = load_ca(pki)
        if ca_cert.not_valid_after_utc <= now:
            raise PkiError(f"the CA in {directory} expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}; "
                           "re-create the PKI with --force")

    for service in services:
        cert_path, key_path = pki.cert_file(service), pki.key_file(service)
        if not force and cert_path.exists() and key_path.exists() and _current_pair(pki, service, ca_cert, now):
            continue
        cert, key = issue_certificate(ca_cert, ca_key, service, days=days, now=now)
        _write_key(key_path, key)
        _write_cert(cert_path, cert)
        created += [cert_path.name, key_path.name]
    return Pki(directory, services, tuple(created))


def create_ca(common_name: str = CA_COMMON_NAME, *, days: int = 730,
              now: dt.datetime | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA certificate (path length 0: it signs leaf certificates only) and its key."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Clinic"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_certificate(ca_cert: x509.Certificate, ca_key: PrivateKey, common_name: str, *,
                      days: int = 365, now: dt.datetime | None = None,
                      not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                      dns_names: Sequence[str] | None = None,
                      ip_addresses: Sequence[str] = ("127.0.0.1",)) -> tuple[x509.Certificate, PrivateKey]:
    """A leaf certificate for ``common_name`` signed by the CA, with a new EC P-256 key.

    SAN: ``dns_names`` (default: the name and ``localhost``) and ``ip_addresses``; EKU serverAuth
    and clientAuth. ``not_before``/``not_after`` override the validity (tests use them to make an
    expired certificate); by default it runs from now (less 5 minutes of clock skew) for ``days``,
    and never past the CA's own expiry.
    """
    now = now or dt.datetime.now(dt.UTC)
    start = not_before or now - _CLOCK_SKEW
    end = not_after or min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dns_names) if dns_names is not None else list(dict.fromkeys([common_name, "localhost"]))
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Clinic"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def write_pair(cert: x509.Certificate, key: PrivateKey, cert_path: Path, key_path: Path) -> None:
    """Write a certificate (0644) and its key (0600) as PEM, each atomically."""
    _write_key(Path(key_path), key)
    _write_cert(Path(cert_path), cert)


# SSL contexts ------------------------------------------------------------------------------

def server_ssl_context(pki: Pki, service: str) -> ssl.SSLContext:
    """Serve as ``service``: TLS 1.2 or later, and every client must present a certificate from the CA."""
    return make_server_context(pki.ca_file, pki.cert_file(service), pki.key_file(service))


def client_ssl_context(pki: Pki, service: str) -> ssl.SSLContext:
    """Call as ``service``: verify the server (chain to the CA only, and host name) and present our pair."""
    return make_client_context(pki.ca_file, pki.cert_file(service), pki.key_file(service))


def ca_trust(ca_file: Path | None) -> ssl.SSLContext | bool:
    """How an HTTPS client checks a server: against ``ca_file`` only (a server certified by the clinic's
    CA), or (``None``) against the system's CAs (httpx's ``verify``)."""
    return make_client_context(ca_file) if ca_file is not None else True


def make_server_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    _load(context, ca_file, cert_file, key_file)
    return context


def make_client_context(ca_file: Path, cert_file: Path | None = None,
                        key_file: Path | None = None) -> ssl.SSLContext:
    """A client context trusting only ``ca_file`` (not the system store); no pair: no client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, ca_file, cert_file, key_file)
    return context


def _load(context: ssl.SSLContext, ca_file: Path, cert_file: Path | None, key_file: Path | None) -> None:
    try:
        context.load_verify_locations(cafile=str(ca_file))
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as error:
        raise PkiError(f"cannot load TLS material ({ca_file}, {cert_file}, {key_file}): {error}") from None


# Files -------------------------------------------------------------------------------------

def _checked_name(service: str) -> str:
    if not _SERVICE_NAME.match(service) or service == "ca":
        raise PkiError(f"invalid service name {service!r}: use lower-case letters, digits and '-' "
                       "(a DNS label), and not 'ca'")
    return service


def load_ca(pki: Pki) -> tuple[x509.Certificate, PrivateKey]:
    """The CA certificate and key of ``pki`` (to issue more certificates, e.g. in tests)."""
    if not (pki.ca_file.exists() and pki.ca_key_file.exists()):
        present = pki.ca_file if pki.ca_file.exists() else pki.ca_key_file
        raise PkiError(f"{present} exists without its pair ({CA_FILE} + {CA_KEY_FILE}); "
                       "restore it or re-create the PKI with --force")
    try:
        cert = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
        key = serialization.load_pem_private_key(pki.ca_key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise PkiError(f"cannot read the CA in {pki.directory}: {error}; re-create it with --force") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise PkiError(f"{CA_KEY_FILE} does not match {CA_FILE} in {pki.directory}; re-create it with --force")
    return cert, key


def _current_pair(pki: Pki, service: str, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    """True if the service's pair is usable as is; False if it has expired (re-issue it)."""
    try:
        cert = x509.load_pem_x509_certificate(pki.cert_file(service).read_bytes())
        key = serialization.load_pem_private_key(pki.key_file(service).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise PkiError(f"cannot read {service}'s pair in {pki.directory}: {error}; use --force") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as error:
        raise PkiError(f"{pki.cert_file(service).name} was not issued by {CA_FILE} ({error or 'bad signature'}); "
                       "use --force to re-issue every certificate") from None
    if key.public_key() != cert.public_key():
        raise PkiError(f"{pki.key_file(service).name} does not match {pki.cert_file(service).name}; use --force")
    return cert.not_valid_after_utc > now


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _atomic_write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_key(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _atomic_write(path, pem, 0o600)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file in the same directory (created 0600), then rename over ``path``."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temp, mode)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise PkiError(f"cannot write {path}: {error.strerror or error}") from None
