-- Logins started but not finished, shared by every replica so a login started on one can be
-- finished on another. The PKCE verifier is encrypted by the application (the state as
-- associated data); a row is taken (deleted) exactly once.

CREATE TABLE IF NOT EXISTS "LiteLLM_ClaudeOAuthPendingLogins" (
    state TEXT PRIMARY KEY,
    user_id VARCHAR(256) NOT NULL,
    verifier_encrypted TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthPendingLogins_user_idx"
    ON "LiteLLM_ClaudeOAuthPendingLogins" (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthPendingLogins_expiry_idx"
    ON "LiteLLM_ClaudeOAuthPendingLogins" (expires_at);
