-- Who did what to whose token, when. Never holds a token. No foreign key: the trail outlives
-- the tokens it describes (logout deletes the token row, not its history).

CREATE TABLE IF NOT EXISTS "LiteLLM_ClaudeOAuthAudit" (
    id BIGSERIAL PRIMARY KEY,
    ts TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    user_id VARCHAR(256) NOT NULL,
    action TEXT NOT NULL,
    ok BOOLEAN NOT NULL DEFAULT TRUE,
    detail TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthAudit_user_idx"
    ON "LiteLLM_ClaudeOAuthAudit" (user_id, id DESC);
