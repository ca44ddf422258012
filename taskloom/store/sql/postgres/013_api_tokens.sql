-- taskloom schema, version 13: named API tokens with a role each (taskloom.tokens). Only a SHA-256 digest
-- of each token is kept: a token is 256 random bits, so a fast hash is enough (no password to stretch),
-- and the server looks tokens up by digest. A revoked token keeps its row (revoked_at) for the audit trail.
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION
);
