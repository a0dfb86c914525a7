-- What the console needs beyond the seed's schema: a version for compare-and-swap, who the
-- token belongs to, how its refreshes went, and a lease so replicas split background refreshes.

ALTER TABLE "LiteLLM_ClaudeOAuthTokens"
    ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS account_email TEXT,
    ADD COLUMN IF NOT EXISTS account_uuid TEXT,
    ADD COLUMN IF NOT EXISTS organization_uuid TEXT,
    ADD COLUMN IF NOT EXISTS organization_name TEXT,
    ADD COLUMN IF NOT EXISTS subscription_type TEXT,
    ADD COLUMN IF NOT EXISTS last_refresh_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS last_refresh_error_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS last_refresh_error TEXT,
    ADD COLUMN IF NOT EXISTS refresh_failures INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS needs_login BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN IF NOT EXISTS refresh_claimed_until TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS refresh_claimed_by TEXT;

-- "Expiring soon": the background refresher scans this, oldest expiry first.
CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthTokens_expiring_idx"
    ON "LiteLLM_ClaudeOAuthTokens" (expires_at)
    WHERE refresh_token_encrypted IS NOT NULL AND NOT needs_login;
