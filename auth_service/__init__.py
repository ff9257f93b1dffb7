"""The auth service: logs users in and issues sessions or JWTs; refresh, logout, JWKS."""
