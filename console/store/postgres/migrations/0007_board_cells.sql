-- What a board row shows of each user's facts, kept by the database beside them: the board
-- reads the plan and usage of 100 000 users as plain columns instead of walking 100 000 JSON
-- documents (seconds of server time). Generated from the facts on every write; filled for the
-- rows already stored when the columns are added. Lax jsonpath: a missing or odd shape is NULL.

CREATE OR REPLACE FUNCTION claude_console_usage_peak(facts JSONB) RETURNS DOUBLE PRECISION
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT max(v::float8) FROM jsonb_path_query(facts,
        '$.usage.windows[*].utilization ? (@.type() == "number")') AS v
$$;

ALTER TABLE "LiteLLM_ClaudeOAuthUsage"
    ADD COLUMN IF NOT EXISTS organization_type TEXT
        GENERATED ALWAYS AS (facts #>> '{profile,organization_type}') STORED,
    ADD COLUMN IF NOT EXISTS rate_limit_tier TEXT
        GENERATED ALWAYS AS (facts #>> '{profile,rate_limit_tier}') STORED,
    ADD COLUMN IF NOT EXISTS usage_5h DOUBLE PRECISION
        GENERATED ALWAYS AS ((jsonb_path_query_first(facts,
            '$.usage.windows[*] ? (@.label == "5h").utilization ? (@.type() == "number")'))::float8) STORED,
    ADD COLUMN IF NOT EXISTS usage_7d DOUBLE PRECISION
        GENERATED ALWAYS AS ((jsonb_path_query_first(facts,
            '$.usage.windows[*] ? (@.label == "7d").utilization ? (@.type() == "number")'))::float8) STORED,
    ADD COLUMN IF NOT EXISTS usage_peak DOUBLE PRECISION
        GENERATED ALWAYS AS (claude_console_usage_peak(facts)) STORED;
