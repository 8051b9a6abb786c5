"""The authorization server is ready when its key ring file can be read and has a current key: nothing more."""

from __future__ import annotations

from litestar.testing import TestClient

from application.settings import Settings
from interfaces.auth.app import create_auth_app
from interfaces.auth.keyring import KeyRingFile, utc_now
from interfaces.auth.service import AuthService


def auth_service(tmp_path) -> AuthService:
    return AuthService.from_settings(Settings(jwt_issuer="http://127.0.0.1:9000"), auth_dir=tmp_path)


def test_ready_with_a_key_ring_even_without_any_client_or_user(tmp_path):
    KeyRingFile(tmp_path).init(utc_now())
    assert auth_service(tmp_path).readiness() == {"key_ring": True}


def test_not_ready_without_a_key_ring_or_with_an_unreadable_one(tmp_path):
    service = auth_service(tmp_path)
    assert service.readiness() == {"key_ring": False}
    KeyRingFile(tmp_path).init(utc_now())
    assert service.readiness() == {"key_ring": True}
    service.keys.path.write_text("not json")
    assert service.readiness() == {"key_ring": False}
    service.keys.path.unlink()
    assert service.readiness() == {"key_ring": False}


def test_the_probes_answer_503_without_keys_and_liveness_stays_200(tmp_path):
    with TestClient(create_auth_app(auth_service(tmp_path))) as client:
        ready, live = client.get("/health/ready"), client.get("/health/live")
    assert (ready.status_code, ready.json()) == (503, {"status": "unavailable", "checks": {"key_ring": False}})
    assert live.status_code == 200
