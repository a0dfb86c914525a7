-- The change feed: which users changed, so an open board reads only those instead of every
-- user on each poll. Statement triggers on the tokens table write one row per changed user
-- (a delete leaves its row too: the tombstone), or one row with user_id NULL ("everything may
-- have changed: list again") when a statement touches more than 1000 users (a restore).
-- A reader keeps, as its cursor, the oldest transaction still running when it last read
-- (pg_snapshot_xmin); it reads the rows of transactions at or after that id, so a writer that
-- commits late is never skipped; it remembers the "everything" rows it has acted on (by seq),
-- so one is not acted on twice. Rows older than ten minutes are pruned by the readers.

CREATE TABLE IF NOT EXISTS "LiteLLM_ClaudeOAuthChanges" (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    user_id VARCHAR(256),
    changed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthChanges_tx_idx" ON "LiteLLM_ClaudeOAuthChanges" (tx);
CREATE INDEX IF NOT EXISTS "LiteLLM_ClaudeOAuthChanges_at_idx" ON "LiteLLM_ClaudeOAuthChanges" (changed_at);

CREATE OR REPLACE FUNCTION claude_oauth_note_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        n := 1001;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO n FROM old_rows;
        IF n BETWEEN 1 AND 1000 THEN
            INSERT INTO "LiteLLM_ClaudeOAuthChanges" (user_id) SELECT user_id FROM old_rows;
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO n FROM new_rows;
        IF n BETWEEN 1 AND 1000 THEN
            INSERT INTO "LiteLLM_ClaudeOAuthChanges" (user_id) SELECT user_id FROM new_rows;
        END IF;
    ELSE
        -- Only what a reader shows: a new version (every token or state change) or a new last
        -- use. Refresh claims and key rotation change neither and are not noted.
        SELECT count(*) INTO n FROM new_rows w JOIN old_rows o ON o.user_id = w.user_id
            WHERE w.version IS DISTINCT FROM o.version OR w.last_used IS DISTINCT FROM o.last_used;
        IF n BETWEEN 1 AND 1000 THEN
            INSERT INTO "LiteLLM_ClaudeOAuthChanges" (user_id)
                SELECT w.user_id FROM new_rows w JOIN old_rows o ON o.user_id = w.user_id
                WHERE w.version IS DISTINCT FROM o.version OR w.last_used IS DISTINCT FROM o.last_used;
        END IF;
    END IF;
    IF n > 1000 THEN
        INSERT INTO "LiteLLM_ClaudeOAuthChanges" (user_id) VALUES (NULL);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS claude_oauth_changes_insert ON "LiteLLM_ClaudeOAuthTokens";
DROP TRIGGER IF EXISTS claude_oauth_changes_update ON "LiteLLM_ClaudeOAuthTokens";
DROP TRIGGER IF EXISTS claude_oauth_changes_delete ON "LiteLLM_ClaudeOAuthTokens";
DROP TRIGGER IF EXISTS claude_oauth_changes_truncate ON "LiteLLM_ClaudeOAuthTokens";
CREATE TRIGGER claude_oauth_changes_insert AFTER INSERT ON "LiteLLM_ClaudeOAuthTokens"
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION claude_oauth_note_changes();
CREATE TRIGGER claude_oauth_changes_update AFTER UPDATE ON "LiteLLM_ClaudeOAuthTokens"
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION claude_oauth_note_changes();
CREATE TRIGGER claude_oauth_changes_delete AFTER DELETE ON "LiteLLM_ClaudeOAuthTokens"
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION claude_oauth_note_changes();
CREATE TRIGGER claude_oauth_changes_truncate AFTER TRUNCATE ON "LiteLLM_ClaudeOAuthTokens"
    FOR EACH STATEMENT EXECUTE FUNCTION claude_oauth_note_changes();
