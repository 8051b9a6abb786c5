"""``clinic certs init``: a development CA and one certificate per service, for mTLS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from infrastructure.tls import DEFAULT_SERVICES, PkiError, create_dev_pki
from interfaces.cli.main import settings


def run_certs_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else settings().data_dir / "pki"
    try:
        pki = create_dev_pki(directory, DEFAULT_SERVICES, days=args.days, force=args.force)
    except PkiError as error:
        print(f"clinic: error: {error}", file=sys.stderr)
        return 1
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    if pki.created:
        print(f"wrote {', '.join(pki.created)} in {pki.directory}")
    else:
        print(f"nothing to do: {pki.directory} already holds the CA and every service's certificate "
              "(--force replaces them)")
    print(f"CA: {ca.subject.rfc4514_string()}, SHA-256 {ca.fingerprint(hashes.SHA256()).hex(':')}, "
          f"valid until {ca.not_valid_after_utc:%Y-%m-%d}")
    print(f"services: {', '.join(DEFAULT_SERVICES)} (<name>.pem + <name>-key.pem, keys 0600). "
          "Development only: keep ca-key.pem private.")
    return 0
