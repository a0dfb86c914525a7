-- Claude OAuth tokens for LiteLLM: the seed's schema (claude-console migration 0001).
--
-- The same file ships as migrations/add_claude_oauth_tokens.sql at the repository root, to run
-- by hand (psql -f add_claude_oauth_tokens.sql) or from /docker-entrypoint-initdb.d/. Safe to
-- run again: every statement checks before it creates or adds.
--
-- On a LiteLLM database it uses LiteLLM's own "LiteLLM_UserTable"; on an empty database it
-- creates a minimal compatible one. Either way the three columns the seed's status queries
-- read are added when missing.

DO $$
BEGIN
    IF current_setting('server_version_num')::int < 130000 THEN
        CREATE EXTENSION IF NOT EXISTS pgcrypto;  -- gen_random_uuid() before PostgreSQL 13
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS "LiteLLM_UserTable" (
    user_id TEXT PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

ALTER TABLE "LiteLLM_UserTable" ADD COLUMN IF NOT EXISTS user_email TEXT;
ALTER TABLE "LiteLLM_UserTable" ADD COLUMN IF NOT EXISTS claude_oauth_enabled BOOLEAN DEFAULT FALSE;
ALTER TABLE "LiteLLM_UserTable" ADD COLUMN IF NOT EXISTS claude_oauth_connected_at TIMESTAMP WITH TIME ZONE;

CREATE TABLE IF NOT EXISTS "LiteLLM_ClaudeOAuthTokens" (
    token_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id VARCHAR(256) NOT NULL UNIQUE,
    access_token_encrypted TEXT NOT NULL,
    refresh_token_encrypted TEXT,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    scopes TEXT[] DEFAULT ARRAY[]::TEXT[],
    last_used TIMESTAMP WITH TIME ZONE,
    refresh_count INTEGER DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(256) NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_by VARCHAR(256) NOT NULL,
    CONSTRAINT fk_user_id FOREIGN KEY (user_id)
        REFERENCES "LiteLLM_UserTable"(user_id) ON DELETE CASCADE
);

-- Some of the seed's documented queries name the tables without quotes, which PostgreSQL folds
-- to lower case. These narrow views let them run unchanged; they are created only where no
-- other relation already has the name.
DO $$
BEGIN
    IF to_regclass('litellm_usertable') IS NULL
       OR EXISTS (SELECT 1 FROM pg_views WHERE viewname = 'litellm_usertable' AND schemaname = current_schema()) THEN
        CREATE OR REPLACE VIEW litellm_usertable AS
            SELECT user_id, user_email, claude_oauth_enabled, claude_oauth_connected_at
            FROM "LiteLLM_UserTable";
    END IF;
    IF to_regclass('litellm_claudeoauthtokens') IS NULL
       OR EXISTS (SELECT 1 FROM pg_views WHERE viewname = 'litellm_claudeoauthtokens' AND schemaname = current_schema()) THEN
        CREATE OR REPLACE VIEW litellm_claudeoauthtokens AS
            SELECT token_id, user_id, access_token_encrypted, refresh_token_encrypted, expires_at, scopes,
                   last_used, refresh_count, created_at, created_by, updated_at, updated_by
            FROM "LiteLLM_ClaudeOAuthTokens";
    END IF;
END
$$;

COMMENT ON TABLE "LiteLLM_ClaudeOAuthTokens" IS
    'Claude OAuth tokens, one row per user; tokens are encrypted by the application (AES-256-GCM).';
