"""Backup, restore, import and export: the faces call these with a service.

Every module here works through the service's public methods (``read_fresh``,
``store_record``, ``record_event``, ``forget``) and its store; the service does not import
this package. Where each piece lives:

* ``sealed``: the backup file's format (header, key derivation, AES-256-GCM framing);
* ``payload``: what a sealed backup holds, column by column;
* ``backup``: writing a backup (portable, or a ``psql -f`` script);
* ``restore``: opening a backup, the restore plan (the store read while the key is derived), and
  its application in batches;
* ``import_export``: one user's tokens from Claude Code, the environment or a token file, and out;
* ``files``, ``progress``: the checks and private writes every file goes through, progress callbacks.
"""

from .backup import BackupSummary, backup, sql_script
from .files import check_source, check_target, size_text
from .import_export import (ImportResult, export_tokens, import_tokens, read_import, record_from_token_data,
                            token_file_data)
from .payload import PAYLOAD_FIELDS, PAYLOAD_KIND, BackupContents
from .progress import Progress, users_text
from .restore import (OVERWRITE_MODES, Change, RestorePlan, RestoreResult, apply_restore, classify, open_and_plan,
                      open_backup, plan_restore)
from .sealed import ARGON2ID, KDFS, MAGIC, MIN_PASSPHRASE, SCRYPT, open_sealed, read_header, seal

__all__ = ["ARGON2ID", "BackupContents", "BackupSummary", "Change", "ImportResult", "KDFS", "MAGIC",
           "MIN_PASSPHRASE", "OVERWRITE_MODES", "PAYLOAD_FIELDS", "PAYLOAD_KIND", "Progress", "RestorePlan",
           "RestoreResult", "SCRYPT", "apply_restore", "backup", "check_source", "check_target", "classify",
           "export_tokens", "import_tokens", "open_and_plan", "open_backup", "open_sealed", "plan_restore",
           "read_header", "read_import", "record_from_token_data", "seal", "size_text", "sql_script",
           "token_file_data", "users_text"]
