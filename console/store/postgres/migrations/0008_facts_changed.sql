-- Which users' facts changed since a moment: an open board re-reads only those (every 15 s)
-- instead of every user's plan and usage. updated_at moves on every write of the facts.

CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthUsage_updated_idx"
    ON "LiteLLM_ClaudeOAuthUsage" (updated_at);
