"""Authentication: the token profile and keyring, credential extraction shared by the
transports, and the failed-authentication limiter. Depends on the core only."""
