"""The development PKI: files, permissions, certificate profile, idempotence, SSL contexts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infrastructure.tls import (
    DEFAULT_SERVICES,
    Pki,
    PkiError,
    client_ssl_context,
    create_ca,
    create_dev_pki,
    issue_certificate,
    load_ca,
    server_ssl_context,
    write_pair,
)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return create_dev_pki(tmp_path_factory.mktemp("pki") / "pki", days=30)


def test_writes_a_ca_and_a_pair_per_service_with_private_keys_0600(pki):
    expected = {"ca.pem", "ca-key.pem"} | {f"{s}{suffix}" for s in DEFAULT_SERVICES for suffix in (".pem", "-key.pem")}
    assert {p.name for p in pki.directory.iterdir()} == expected
    assert set(pki.created) == expected
    for path in pki.directory.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.name.endswith("-key.pem") else 0o644), path.name
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700


def test_service_certificates_follow_the_profile(pki):
    ca = load(pki.ca_file)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for service in DEFAULT_SERVICES:
        cert = load(pki.cert_file(service))
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == service
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [service, "localhost"]
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=6)


def test_is_idempotent_and_keeps_the_ca_unless_forced(tmp_path):
    first = create_dev_pki(tmp_path, services=["registry", "booking"])
    ca_before = first.ca_file.read_bytes()
    key_before = first.key_file("registry").read_bytes()

    again = create_dev_pki(tmp_path, services=["registry", "booking"])
    assert again.created == ()
    assert again.ca_file.read_bytes() == ca_before and again.key_file("registry").read_bytes() == key_before

    first.key_file("booking").unlink()  # a lost pair is re-issued by the same CA
    more = create_dev_pki(tmp_path, services=["registry", "booking", "gateway"])
    assert set(more.created) == {"booking.pem", "booking-key.pem", "gateway.pem", "gateway-key.pem"}
    load(more.cert_file("gateway")).verify_directly_issued_by(load(more.ca_file))

    forced = create_dev_pki(tmp_path, services=["registry", "booking"], force=True)
    assert forced.ca_file.read_bytes() != ca_before
    assert "registry.pem" in forced.created
    load(forced.cert_file("registry")).verify_directly_issued_by(load(forced.ca_file))


def test_an_expired_service_certificate_is_reissued_by_the_same_ca(tmp_path):
    pki = create_dev_pki(tmp_path, services=["registry", "booking"])
    ca, ca_key = load_ca(pki)
    now = dt.datetime.now(dt.UTC)
    cert, key = issue_certificate(ca, ca_key, "booking", not_before=now - dt.timedelta(days=2),
                                  not_after=now - dt.timedelta(days=1))
    write_pair(cert, key, pki.cert_file("booking"), pki.key_file("booking"))
    again = create_dev_pki(tmp_path, services=["registry", "booking"])
    assert set(again.created) == {"booking.pem", "booking-key.pem"}
    renewed = load(again.cert_file("booking"))
    assert renewed.not_valid_after_utc > now
    renewed.verify_directly_issued_by(load(again.ca_file))


def test_an_expired_ca_is_reported(tmp_path):
    pki = create_dev_pki(tmp_path, services=["registry"])
    now = dt.datetime.now(dt.UTC)
    old_ca, old_key = create_ca(days=1, now=now - dt.timedelta(days=3))
    write_pair(old_ca, old_key, pki.ca_file, pki.ca_key_file)
    with pytest.raises(PkiError, match="expired on .*--force"):
        create_dev_pki(tmp_path, services=["registry"])


def test_a_certificate_from_another_ca_in_the_directory_is_reported(tmp_path):
    create_dev_pki(tmp_path, services=["registry"])
    other = create_dev_pki(tmp_path / "other", services=["registry"])
    (tmp_path / "registry.pem").write_bytes(other.cert_file("registry").read_bytes())
    (tmp_path / "registry-key.pem").write_bytes(other.key_file("registry").read_bytes())
    with pytest.raises(PkiError, match="not issued by ca.pem.*--force"):
        create_dev_pki(tmp_path, services=["registry"])


def test_a_ca_without_its_key_is_reported(tmp_path):
    create_dev_pki(tmp_path, services=["registry"])
    (tmp_path / "ca-key.pem").unlink()
    with pytest.raises(PkiError, match="without its pair"):
        create_dev_pki(tmp_path, services=["registry", "booking"])


@pytest.mark.parametrize("services", [["Registry"], ["ca"], ["a_b"], [""], ["../x"]])
def test_service_names_must_be_dns_labels(tmp_path, services):
    with pytest.raises(PkiError, match="invalid service name"):
        create_dev_pki(tmp_path, services=services)


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_days_are_bounded(tmp_path, days):
    with pytest.raises(PkiError, match="days must be between"):
        create_dev_pki(tmp_path, days=days)


def test_a_file_in_the_way_is_reported(tmp_path):
    (tmp_path / "pki").write_text("not a directory")
    with pytest.raises(PkiError, match="not a directory"):
        create_dev_pki(tmp_path / "pki")


def test_open_names_what_is_missing(tmp_path):
    create_dev_pki(tmp_path, services=["registry"])
    assert Pki.open(tmp_path, ["registry"]).ca_file.exists()
    with pytest.raises(PkiError, match="booking.pem, booking-key.pem.*clinic certs init"):
        Pki.open(tmp_path, ["registry", "booking"])


def test_issue_certificate_makes_expired_and_foreign_certificates():
    ca, ca_key = create_ca("Test CA")
    other_ca, other_key = create_ca("Other CA")
    now = dt.datetime.now(dt.UTC)
    expired, _ = issue_certificate(ca, ca_key, "booking", not_before=now - dt.timedelta(days=10),
                                   not_after=now - dt.timedelta(days=1))
    assert expired.not_valid_after_utc < now
    expired.verify_directly_issued_by(ca)
    foreign, _ = issue_certificate(other_ca, other_key, "booking")
    with pytest.raises(ValueError):  # issuer name differs
        foreign.verify_directly_issued_by(ca)


def test_ssl_contexts_require_certificates_and_tls_1_2(pki):
    server = server_ssl_context(pki, "registry")
    client = client_ssl_context(pki, "booking")
    for context in (server, client):
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("organizationName", "Clinic"),), (("commonName", "Clinic Development CA"),))], "only our CA"
    assert client.check_hostname


def test_an_unreadable_pair_is_a_pki_error(tmp_path):
    pki = create_dev_pki(tmp_path, services=["registry"])
    pki.key_file("registry").write_text("garbage")
    with pytest.raises(PkiError, match="cannot load TLS material"):
        server_ssl_context(pki, "registry")


def test_write_pair_keeps_keys_private(tmp_path):
    ca, ca_key = create_ca()
    cert, key = issue_certificate(ca, ca_key, "tool")
    write_pair(cert, key, tmp_path / "tool.pem", tmp_path / "tool-key.pem")
    assert stat.S_IMODE((tmp_path / "tool-key.pem").stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"
