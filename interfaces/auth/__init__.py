"""The OAuth2 authorization server (``clinic run auth``): client credentials, code + PKCE, JWKS, key rotation."""
