"""Tokens, key sources and scopes: shared by the HTTP interfaces (verifying) and service clients (presenting)."""
