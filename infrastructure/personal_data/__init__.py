"""Crypto-shredding: personal fields of events encrypted with a key per data subject.

``keys`` holds the port (``SubjectKeyStore``), key wrapping and the cache; ``sqlite`` and
``postgres`` the persistent stores; ``mapper`` the eventsourcing mapper that seals and opens
the fields. See docs/gdpr.md and docs/adr/0006-crypto-shredding.md.
"""
