"""``clinic certs init``: writes the development PKI, is idempotent, explains bad input."""

from __future__ import annotations

import pytest

from interfaces.cli.main import main


def test_init_writes_under_the_data_dir_by_default_and_is_idempotent(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLINIC_DATA_DIR", str(tmp_path / "data"))
    assert main(["certs", "init"]) == 0
    pki = tmp_path / "data" / "pki"
    assert (pki / "ca.pem").is_file() and (pki / "gateway-key.pem").is_file()
    assert "wrote ca.pem, ca-key.pem, registry.pem" in capsys.readouterr().out
    ca = (pki / "ca.pem").read_bytes()

    assert main(["certs", "init"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (pki / "ca.pem").read_bytes() == ca

    assert main(["certs", "init", "--force", "--days", "30"]) == 0
    assert (pki / "ca.pem").read_bytes() != ca


def test_init_into_a_chosen_directory(tmp_path, capsys):
    assert main(["certs", "init", "--dir", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "booking.pem").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["certs", "init", "--days", "0"], "must be 1 or more"),
    (["certs", "init", "--days", "soon"], "invalid"),
    (["certs"], "required"),
])
def test_bad_arguments_exit_with_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_input_is_a_clear_error_and_a_non_zero_exit(tmp_path, capsys):
    assert main(["certs", "init", "--dir", str(tmp_path), "--days", "5000"]) == 1
    assert "days must be between 1 and 3650" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["certs", "init", "--dir", str(tmp_path / "file")]) == 1
    assert "exists and is not a directory" in capsys.readouterr().err
