-- What Claude says about each account (usage windows, profile), apart from the tokens: a
-- usage or profile answer never writes the token row. usage_next_at is the polite lease: no
-- replica asks Claude for a user's usage before it (claimed with FOR UPDATE SKIP LOCKED).

CREATE TABLE IF NOT EXISTS "LiteLLM_ClaudeOAuthUsage" (
    user_id VARCHAR(256) PRIMARY KEY,
    facts JSONB NOT NULL DEFAULT '{}'::jsonb,
    usage_next_at TIMESTAMP WITH TIME ZONE,
    usage_claimed_by TEXT,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthUsage_next_idx"
    ON "LiteLLM_ClaudeOAuthUsage" (usage_next_at);
