"""Verbs that move tokens in and out of files: backup, restore, import, export."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import UsageError
from ..tokens import count_text, format_time
from ..users import shown
from .output import emit_json, err, isatty, out, run

PROGRESS_FROM = 1000  # users: runs this big report progress on stderr


def _passphrase(args, *, confirm: bool) -> str:
    """From the variable named by --passphrase-env, else a prompt (twice for a backup). Never argv."""
    import getpass
    import re

    from ..transfer import MIN_PASSPHRASE

    name = getattr(args, "passphrase_env", None)
    if name:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError("--passphrase-env takes the NAME of an environment variable that holds the "
                             "passphrase", hint="e.g. --passphrase-env BACKUP_PASSPHRASE")
        value = os.environ.get(name, "")
        if not value:
            raise UsageError(f"environment variable {name} is not set or is empty",
                             hint=f"set {name}, or leave out --passphrase-env to be asked")
    else:
        if not isatty(sys.stdin):
            raise UsageError("a passphrase is needed and there is no terminal to ask for it",
                             hint="use --passphrase-env VAR (never the command line)")
        try:
            value = getpass.getpass("Backup passphrase: " if confirm else "Passphrase: ")
            if confirm and len(value) >= MIN_PASSPHRASE and getpass.getpass("Repeat it: ") != value:
                raise UsageError("the two passphrases differ; nothing was written")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("no passphrase was given; nothing was done") from None
    if confirm and len(value) < MIN_PASSPHRASE:
        raise UsageError(f"the passphrase is shorter than {MIN_PASSPHRASE} characters; nothing was written",
                         hint="choose a longer one: the backup is only as strong as it")
    return value


def _progress_printer():
    """``progress(stage, done, total)`` for the engine: a line on stderr for runs of 1 000+ users."""
    labels = {"read": "reading", "decrypt": "decrypting", "encrypt": "encrypting", "write": "writing"}
    tty = isatty(sys.stderr)
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if total < PROGRESS_FROM:
            return
        now = time.monotonic()
        if done < total and now - last[0] < (0.2 if tty else 2.0):
            return
        last[0] = now
        line = f"{labels.get(stage, stage)}: {done}/{total} users ({100 * done // total}%)"
        sys.stderr.write(f"\r{line}" + ("\n" if done >= total else "") if tty else line + "\n")
        sys.stderr.flush()

    return progress


def cmd_backup(args) -> int:
    from ..transfer import KDFS, backup, check_target, size_text, users_text

    check_target(args.file, args.force)  # before asking for a passphrase
    passphrase = None if args.format == "sql" else _passphrase(args, confirm=True)

    async def body(service) -> int:
        summary = await backup(service, args.file, passphrase, users=args.users, fmt=args.format,
                               force=args.force, kdf=KDFS[args.kdf], progress=_progress_printer())
        for uid in summary.missing:
            err(f"warning: user {uid!r} is not stored, so the backup does not hold it")
        if args.json:
            emit_json(summary.to_dict())
        elif summary.format == "sql":
            out(f"Wrote {users_text(summary.users)} to {summary.path} ({size_text(summary.bytes)}, mode 0600) as SQL; "
                "tokens are still encrypted under the store's key.")
            out(f'Restore with: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f {summary.path}')
        else:
            out(f"Backed up {users_text(summary.users)} to {summary.path} ({size_text(summary.bytes)}, mode 0600), "
                f"encrypted with the passphrase ({summary.kdf}, AES-256-GCM).")
            out(f"Restore with: claude-console restore {summary.path} --dry-run")
        return 1 if summary.missing else 0

    return run(args, body)


_KIND_TEXT = {"new": "not stored here", "older": "stored token is older", "newer": "stored token is newer",
              "conflict": "conflict", "same": "already as in the backup",
              "invalid": "an invalid user id or value"}
PLAN_ROWS = 50


def _print_plan(plan) -> None:
    from ..transfer import users_text

    counts = plan.counts()
    made = f"made {format_time(plan.backup_created_at)}, " if plan.backup_created_at else ""
    out(f"{plan.path} ({made}{users_text(len(plan.changes))}) against the {plan.tier} store, "
        f"--overwrite {plan.overwrite}:")
    doing = {"add": "added", "replace": "replaced", "keep": "kept", "none": "left as they are",
             "refuse": "refused"}
    for kind in ("new", "older", "newer", "conflict", "same", "invalid"):
        actions = sorted({c.action for c in plan.changes if c.kind == kind})
        if actions:
            out(f"  {kind:<9} {counts[kind]:>7}  {_KIND_TEXT[kind]}: {', '.join(doing[a] for a in actions)}")
    if not plan.changes:
        out("  (no users to restore)")
    listed = [c for c in plan.changes if c.kind not in ("same", "invalid")]
    if listed:
        out("")
        out(f"  {'USER':<24} {'CHANGE':<9} {'ACTION':<8} {'STORED UPDATED':<23} {'BACKUP UPDATED':<23}")
        for c in listed[:PLAN_ROWS]:
            stored = format_time(c.stored_updated_at) if c.stored_updated_at is not None else "-"
            out(f"  {shown(c.user_id, 24):<24} {c.kind:<9} {c.action:<8} {stored:<23} "
                f"{format_time(c.backup_updated_at):<23}")
        if len(listed) > PLAN_ROWS:
            out(f"  … and {len(listed) - PLAN_ROWS} more (--json lists every user)")
    refused = plan.refused
    if refused:
        out("")
        out("  Refused (never written; the other users are):")
        for c in refused[:PLAN_ROWS]:
            out(f"  user '{shown(c.user_id, 40)}': {shown(c.reason, 120)}")
        if len(refused) > PLAN_ROWS:
            out(f"  … and {len(refused) - PLAN_ROWS} more (--json lists every user)")
    if counts["newer"] or counts["conflict"]:
        if plan.overwrite != "always":
            out("  Kept tokens stay as they are; --overwrite always would replace them with the backup's.")


def cmd_restore(args) -> int:
    from ..transfer import apply_restore, check_source, open_and_plan, users_text

    check_source(args.file)  # before asking for a passphrase
    passphrase = _passphrase(args, confirm=False)

    async def body(service) -> int:
        progress = _progress_printer()
        _, plan = await open_and_plan(service, args.file, passphrase, users=args.users,
                                      overwrite=args.overwrite, progress=progress)
        for uid in plan.missing:
            err(f"warning: user '{shown(uid)}' is not in the backup")
        if not args.json:
            _print_plan(plan)
        todo = len(plan.to_write)
        if args.dry_run or not todo:
            if args.json:
                emit_json({"plan": plan.to_dict(), "result": None})
            else:
                out("Dry run: nothing was written." if args.dry_run else "Nothing to restore: nothing was written.")
            return 1 if plan.missing or plan.refused else 0
        if not args.json and not args.yes and isatty(sys.stdin):
            try:
                answer = input(f"Write {users_text(todo)} into the {plan.tier} store? [y/N] ").strip().lower()
            except EOFError:
                answer = ""
            if answer not in ("y", "yes"):
                out("Nothing was changed.")
                return 1
        result = await apply_restore(service, plan, progress=progress)
        if args.json:
            emit_json({"plan": plan.to_dict(), "result": result.to_dict()})
        else:
            batches = count_text(result.batches, "batch")
            refused = f", {result.refused} refused" if result.refused else ""
            out(f"Restored {users_text(len(result.written))} in {batches} ({result.seconds:.1f}s); "
                f"{result.kept} kept, {result.unchanged} unchanged{refused}.")
            if result.changed_meanwhile:
                names = ", ".join(shown(u, 40) for u in result.changed_meanwhile[:5]) + (", …" if len(result.changed_meanwhile) > 5 else "")
                out(f"{users_text(len(result.changed_meanwhile))} changed while restoring and kept their newer tokens: "
                    f"{names}")
        return 1 if plan.missing or plan.refused else 0

    return run(args, body)


def parse_when(text: str | None) -> float | None:
    """``--expires-at``: epoch seconds or milliseconds, or ISO-8601 (UTC unless it says)."""
    if text is None:
        return None
    from datetime import datetime, timezone

    from ..tokens import parse_expires_at

    try:
        return parse_expires_at(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--expires-at {text!r} is not a time",
                         hint="give seconds since the epoch or an ISO-8601 time, e.g. 2027-12-01T00:00:00Z") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def cmd_import(args) -> int:
    expires_at = parse_when(getattr(args, "expires_at", None))

    async def body(service) -> int:
        from ..tokens import format_duration
        from ..transfer import import_tokens

        result = await import_tokens(service, args.source, getattr(args, "path", None), args.user,
                                     force=args.force, expires_at=expires_at)
        record = result.record
        if not result.changed:
            out(f"User '{record.user_id}' already has the tokens from {result.origin}; nothing was changed.")
            return 0
        left = record.expires_at - time.time()
        when = f"expires in {format_duration(left)}" if left > 0 else f"expired {format_duration(-left)} ago"
        refresh = "with" if record.refresh_token else "without"
        kind = " (long-lived, never refreshed)" if record.long_lived else ""
        out(f"Imported user '{record.user_id}' from {result.origin}: {service.status_of(record).value}{kind}, "
            f"{when}, {refresh} a refresh token.")
        if record.long_lived and expires_at is None:
            out("Its expiry is not in the token: taken as a year from now (pass --expires-at to say when).")
        if args.source == "env":
            out("The stored token now comes before CLAUDE_ACCESS_TOKEN; you may unset the CLAUDE_* variables.")
        return 0

    return run(args, body)


def cmd_export(args) -> int:
    async def body(service) -> int:
        from ..transfer import export_tokens

        record = await export_tokens(service, args.file, args.user, force=args.force)
        out(f"Exported user '{record.user_id}' to {args.file} (mode 0600) in the seed's token file format "
            "{accessToken, refreshToken, expiresAt}. It holds the tokens in the clear: keep it private.")
        return 0

    return run(args, body)


class RefuseOnCommandLine(argparse.Action):
    """``--passphrase``: refused without echoing the value (argv shows in ps and shell history)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted: a passphrase on the command line shows in ps and "
                     "shell history; type it at the prompt, or use --passphrase-env VAR")
