"""How a broker connection's parameters are built: nothing for amqp://, our SSL context for amqps://."""

from __future__ import annotations

import ssl

import pytest

from application.services import broker_tls
from application.settings import Settings, SettingsError
from infrastructure.messaging.connection import BrokerTls, connection_options
from infrastructure.tls import PkiError, create_dev_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return create_dev_pki(tmp_path_factory.mktemp("amqp-pki") / "pki", services=("rabbitmq", "booking"))


def test_a_plain_url_gets_no_ssl_context():
    assert connection_options("amqp://guest:guest@127.0.0.1:5672/") == {}


def test_amqps_with_our_ca_verifies_the_broker_and_presents_our_pair(pki):
    tls = BrokerTls(pki.ca_file, pki.cert_file("booking"), pki.key_file("booking"))
    context = connection_options("amqps://booking@rabbitmq:5671/clinic", tls)["context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    trusted = [dict(part[0] for part in ca["subject"])["commonName"] for ca in context.get_ca_certs()]
    assert trusted == ["Clinic Development CA"], "only our CA, not the system store"


def test_amqps_without_a_ca_uses_the_system_store():
    context = connection_options("amqps://broker.example.org/")["context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_tls_material_with_a_plain_url_is_refused(pki):
    with pytest.raises(ValueError, match="needs an amqps:// URL"):
        connection_options("amqp://127.0.0.1/", BrokerTls(ca_file=pki.ca_file))
    with pytest.raises(ValueError, match="amqp:// or amqps://"):
        connection_options("http://127.0.0.1/")


def test_a_missing_file_fails_at_once_and_names_it(tmp_path, pki):
    with pytest.raises(PkiError, match="missing.pem"):
        connection_options("amqps://127.0.0.1/", BrokerTls(pki.ca_file, tmp_path / "missing.pem", tmp_path / "k"))


def test_the_settings_name_the_broker_tls_files(pki):
    settings = Settings.from_env({"CLINIC_AMQP_URL": "amqps://rabbitmq/", "CLINIC_AMQP_CA_FILE": str(pki.ca_file),
                                  "CLINIC_AMQP_CERT_FILE": str(pki.cert_file("booking")),
                                  "CLINIC_AMQP_KEY_FILE": str(pki.key_file("booking"))})
    assert broker_tls(settings) == BrokerTls(pki.ca_file, pki.cert_file("booking"), pki.key_file("booking"))
    with pytest.raises(SettingsError, match="CLINIC_AMQP_URL to start with amqps://"):
        Settings.from_env({"CLINIC_AMQP_CA_FILE": str(pki.ca_file)})
    with pytest.raises(SettingsError, match="go together"):
        Settings.from_env({"CLINIC_AMQP_URL": "amqps://rabbitmq/", "CLINIC_AMQP_CERT_FILE": "/c.pem"})
