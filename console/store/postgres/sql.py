"""The SQL text of the PostgreSQL tier: table names, the column lists and every statement.

Statements are built once, at import, from the column tuples below, so a column added to the
record is added to every read and write together.
"""

from __future__ import annotations

from ...tokens import HIDDEN

TOKENS = '"LiteLLM_ClaudeOAuthTokens"'
USERS = '"LiteLLM_UserTable"'
AUDIT = '"LiteLLM_ClaudeOAuthAudit"'
PENDING = '"LiteLLM_ClaudeOAuthPendingLogins"'
MIGRATIONS = '"LiteLLM_ClaudeOAuthMigrations"'

# TokenRecord fields in the order of the SELECT lists below (source is added in Python).
FIELDS = ("user_id", "access_token", "refresh_token", "expires_at", "scopes", "account_email",
           "account_uuid", "organization_uuid", "organization_name", "subscription_type",
           "created_at", "updated_at", "last_used", "refresh_count", "last_refresh_at",
           "last_refresh_error_at", "last_refresh_error", "refresh_failures", "needs_login", "version")


_TAIL = """date_part('epoch', expires_at), COALESCE(scopes, '{}'), account_email, account_uuid,
    organization_uuid, organization_name, subscription_type,
    COALESCE(date_part('epoch', created_at), 0), COALESCE(date_part('epoch', updated_at), 0),
    date_part('epoch', last_used), COALESCE(refresh_count, 0), date_part('epoch', last_refresh_at),
    date_part('epoch', last_refresh_error_at), last_refresh_error, refresh_failures, needs_login, version"""
SELECT_ONE = f"""SELECT user_id, access_token_encrypted, refresh_token_encrypted, {_TAIL}
    FROM {TOKENS} WHERE user_id = $1"""
# Inside the user's lock: the row lock in the same round trip when it is free (never waits).
SELECT_ONE_LOCKING = SELECT_ONE + " FOR UPDATE SKIP LOCKED"
SELECT_ALL_SECRETS = f"SELECT user_id, access_token_encrypted, refresh_token_encrypted, {_TAIL} FROM {TOKENS}"
# The board's listing: one query, nothing to decrypt, no ciphertext on the wire; after the
# fields, the key id the access token is under (or 'fernet'), so a row under a key that is
# not configured is listed as locked.
KEY_ID = """CASE WHEN access_token_encrypted LIKE 'enc:v1:%' THEN substr(access_token_encrypted, 8, 8)
    WHEN access_token_encrypted LIKE 'gAAAAA%' THEN 'fernet' END"""
SELECT_ALL_HIDDEN = f"""SELECT user_id, '{HIDDEN}',
    CASE WHEN refresh_token_encrypted IS NULL THEN NULL ELSE '{HIDDEN}' END, {_TAIL}, {KEY_ID} FROM {TOKENS}"""
KEY_ID_INDEX = len(FIELDS)   # where that key id sits in a SELECT_ALL_HIDDEN row
FIRST_PAGE = " ORDER BY user_id LIMIT $1"                  # keyset pages ride the primary key
NEXT_PAGE = " WHERE user_id > $1 ORDER BY user_id LIMIT $2"

_RETURNING = """RETURNING version, COALESCE(date_part('epoch', created_at), 0),
    COALESCE(date_part('epoch', updated_at), 0), date_part('epoch', last_used)"""
# $1 user, $2 expected version, $3.. the columns below, in order.
_SET_COLUMNS = ("access_token_encrypted", "refresh_token_encrypted", "expires_at", "scopes", "account_email",
                "account_uuid", "organization_uuid", "organization_name", "subscription_type",
                "refresh_count", "last_refresh_at", "last_refresh_error_at", "last_refresh_error",
                "refresh_failures", "needs_login")
_TIMES = {"expires_at", "last_refresh_at", "last_refresh_error_at"}


def _placeholder(column: str, n: int) -> str:
    return f"to_timestamp(${n}::float8)" if column in _TIMES else f"${n}"


# Both single and bulk writes mark the user as connected in LiteLLM's user table, once.
_USER_ON_CONFLICT = """ON CONFLICT (user_id) DO UPDATE SET claude_oauth_enabled = TRUE,
        claude_oauth_connected_at = COALESCE(u.claude_oauth_connected_at, now()),
        user_email = COALESCE(u.user_email, EXCLUDED.user_email)
    WHERE u.claude_oauth_enabled IS NOT TRUE OR u.claude_oauth_connected_at IS NULL
        OR (u.user_email IS NULL AND EXCLUDED.user_email IS NOT NULL)"""

_SETS = ", ".join(f"{c} = {_placeholder(c, i + 3)}" for i, c in enumerate(_SET_COLUMNS))
_N = len(_SET_COLUMNS) + 2
UPDATE_CAS = f"""UPDATE {TOKENS} SET {_SETS},
    last_used = GREATEST(last_used, to_timestamp(${_N + 1}::float8)), updated_at = now(),
    updated_by = ${_N + 2}, version = version + 1
    WHERE user_id = $1 AND version = $2 {_RETURNING}"""
_INSERT_VALUES = ", ".join(_placeholder(c, i + 3) for i, c in enumerate(_SET_COLUMNS))
# The seed's foreign key needs a user row; make one when missing and mark OAuth as connected,
# the way the seed's handler does. $2 is unused by inserts (kept so both share parameters).
_UPSERT_HEAD = f"""WITH u AS (
    INSERT INTO {USERS} AS u (user_id, user_email, claude_oauth_enabled, claude_oauth_connected_at)
    VALUES ($1, $7, TRUE, now())
    {_USER_ON_CONFLICT}
)
INSERT INTO {TOKENS} AS t (user_id, {", ".join(_SET_COLUMNS)}, last_used, created_at, created_by,
    updated_by, version)
VALUES ($1, {_INSERT_VALUES}, to_timestamp(${_N + 1}::float8),
    COALESCE(to_timestamp(NULLIF($2::float8, 0)), now()), ${_N + 2}, ${_N + 2}, 1)"""
INSERT_NEW = f"{_UPSERT_HEAD} ON CONFLICT (user_id) DO NOTHING {_RETURNING}"
UPSERT = f"""{_UPSERT_HEAD} ON CONFLICT (user_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _SET_COLUMNS)},
    last_used = GREATEST(t.last_used, EXCLUDED.last_used), updated_at = now(),
    updated_by = EXCLUDED.updated_by, version = t.version + 1 {_RETURNING}"""
DELETE = f"""WITH d AS (DELETE FROM {TOKENS} WHERE user_id = $1 RETURNING user_id),
    u AS (UPDATE {USERS} SET claude_oauth_enabled = FALSE, claude_oauth_connected_at = NULL
          WHERE user_id IN (SELECT user_id FROM d))
    SELECT count(*) FROM d"""
TOUCH = f"""UPDATE {TOKENS} SET last_used = to_timestamp($2::float8)
    WHERE user_id = $1 AND (last_used IS NULL OR last_used < to_timestamp($2::float8))"""
# -- bulk: backups and restores ----------------------------------------------------------
# Restores write through COPY into a session temporary table (emptied at each commit), then
# one upsert. Times travel as float8 seconds and become timestamps in SQL.

BULK = "claude_console_bulk"
BULK_COLUMNS = (("user_id", "text"), ("expected", "bigint"),
                *((c, {"scopes": "text[]", "refresh_count": "integer", "refresh_failures": "integer",
                       "needs_login": "boolean"}.get(c, "float8" if c in _TIMES else "text"))
                  for c in _SET_COLUMNS),
                ("created_at", "float8"), ("updated_at", "float8"), ("last_used", "float8"),
                ("created_by", "text"), ("updated_by", "text"), ("audit_detail", "text"))
# Room for a batch of 5 000 rows (about 1 kB each) in memory: the upsert's transition tables.
BULK_WORK_MEM = "32MB"
BULK_CREATE = (f"CREATE TEMP TABLE IF NOT EXISTS {BULK} ("
               + ", ".join(f"{c} {t}" for c, t in BULK_COLUMNS) + ") ON COMMIT DELETE ROWS")
# $1 actor (created/updated by when the row has none), $2 true: write whatever the versions,
# $3 the audit action (NULL: none) and $4 its actor: an audit row for each user written, with
# its row's audit_detail, in the same statement (the change and its trail commit together).
BULK_UPSERT = f"""WITH u AS (
    INSERT INTO {USERS} AS u (user_id, user_email, claude_oauth_enabled, claude_oauth_connected_at)
    SELECT user_id, account_email, TRUE, now() FROM {BULK}
    {_USER_ON_CONFLICT}
), w AS (
INSERT INTO {TOKENS} AS t (user_id, {", ".join(_SET_COLUMNS)}, created_at, updated_at, last_used,
    created_by, updated_by, version)
SELECT b.user_id, {", ".join(f"to_timestamp(b.{c})" if c in _TIMES else f"b.{c}" for c in _SET_COLUMNS)},
    COALESCE(to_timestamp(NULLIF(b.created_at, 0)), now()), COALESCE(to_timestamp(NULLIF(b.updated_at, 0)), now()),
    to_timestamp(b.last_used), COALESCE(b.created_by, $1), COALESCE(b.updated_by, $1), b.expected + 1
FROM {BULK} b
WHERE $2 OR b.expected = 0 OR EXISTS (SELECT 1 FROM {TOKENS} x WHERE x.user_id = b.user_id)
ON CONFLICT (user_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _SET_COLUMNS)},
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, last_used = EXCLUDED.last_used,
    created_by = EXCLUDED.created_by, updated_by = EXCLUDED.updated_by, version = t.version + 1
WHERE $2 OR t.version = EXCLUDED.version - 1
RETURNING t.user_id
), a AS (
    INSERT INTO {AUDIT} (ts, user_id, action, ok, detail, actor)
    SELECT now(), w.user_id, $3, TRUE, COALESCE(b.audit_detail, ''), $4
    FROM w JOIN {BULK} b ON b.user_id = w.user_id WHERE $3::text IS NOT NULL
)
SELECT user_id FROM w"""

# Rows as stored (tokens encrypted) with their authors, for backups; $1 the users or NULL: all.
EXPORT = f"""SELECT user_id, access_token_encrypted, refresh_token_encrypted, {_TAIL},
    created_by, updated_by FROM {TOKENS}
    WHERE $1::text[] IS NULL OR user_id = ANY($1::text[])"""
EXPORT_FIELDS = (*FIELDS, "created_by", "updated_by")
# A backup in one snapshot on two connections, rows in user id order on both: the ciphertexts
# (decrypted in Python while PostgreSQL runs the second), and every other field of EXPORT_FIELDS
# as one JSON array each, built by PostgreSQL ("usually works" ordering of a sorted subquery is
# checked: the user ids come back from both and must be equal). $1 the users or NULL: all.
_EXPORT_WHERE = "WHERE $1::text[] IS NULL OR user_id = ANY($1::text[]) ORDER BY user_id"
EXPORT_TOKENS = f"SELECT user_id, access_token_encrypted, refresh_token_encrypted FROM {TOKENS} {_EXPORT_WHERE}"
# Both reads walk the user id index: sorting 100 000 wide rows spills to disk at the default
# work_mem, and parallel workers would take the cores the decryption and the KDF are using.
EXPORT_SETTINGS = "SET LOCAL enable_sort = off; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off"
EXPORT_JSON_EXPRESSIONS = {
    "user_id": "user_id", "expires_at": "date_part('epoch', expires_at)", "scopes": "COALESCE(scopes, '{}')",
    "account_email": "account_email", "account_uuid": "account_uuid", "organization_uuid": "organization_uuid",
    "organization_name": "organization_name", "subscription_type": "subscription_type",
    "created_at": "COALESCE(date_part('epoch', created_at), 0)",
    "updated_at": "COALESCE(date_part('epoch', updated_at), 0)", "last_used": "date_part('epoch', last_used)",
    "refresh_count": "COALESCE(refresh_count, 0)", "last_refresh_at": "date_part('epoch', last_refresh_at)",
    "last_refresh_error_at": "date_part('epoch', last_refresh_error_at)", "last_refresh_error": "last_refresh_error",
    "refresh_failures": "refresh_failures", "needs_login": "needs_login", "version": "version",
    "created_by": "created_by", "updated_by": "updated_by"}
EXPORT_JSON_FIELDS = tuple(EXPORT_JSON_EXPRESSIONS)
EXPORT_JSON = ("SELECT " + ", ".join(f"COALESCE(json_agg(c{i})::text, '[]')" for i in range(len(EXPORT_JSON_FIELDS)))
               + " FROM (SELECT " + ", ".join(f"{e} AS c{i}" for i, e in enumerate(EXPORT_JSON_EXPRESSIONS.values()))
               + f" FROM {TOKENS} {_EXPORT_WHERE}) s")
APPEND_AUDIT_MANY = f"""INSERT INTO {AUDIT} (ts, user_id, action, ok, detail, actor)
    SELECT to_timestamp(ts), u, a, o, d, w
    FROM unnest($1::float8[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::text[])
        AS x(ts, u, a, o, d, w)"""
TABLE_COLUMNS = """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
    WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"""

# -- key rotation: keyset pages, and writes that only land while the version is unchanged ----

ROTATE_PAGE = f"""SELECT user_id, access_token_encrypted, refresh_token_encrypted, version FROM {TOKENS}
    WHERE user_id > $1 ORDER BY user_id LIMIT $2"""
ROTATE_WRITE = f"""UPDATE {TOKENS} AS t SET access_token_encrypted = v.access, refresh_token_encrypted = v.refresh
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS v(user_id, access, refresh, version)
    WHERE t.user_id = v.user_id AND t.version = v.version
    RETURNING t.user_id"""
ROTATE_PENDING_PAGE = f"""SELECT state, verifier_encrypted FROM {PENDING} WHERE state > $1 ORDER BY state LIMIT $2"""
ROTATE_PENDING_WRITE = f"""UPDATE {PENDING} AS p SET verifier_encrypted = v.new
    FROM unnest($1::text[], $2::text[], $3::text[]) AS v(state, old, new)
    WHERE p.state = v.state AND p.verifier_encrypted = v.old
    RETURNING p.state"""

