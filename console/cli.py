"""Argument parsing -> service calls -> printing. No logic of its own.

Exit codes: 0 success (for ``status``: a usable token), 1 failure (not logged in, refresh
rejected), 2 bad usage or configuration, 3 storage unreachable or unreadable. Tokens are
printed by ``token`` only; everywhere else they are masked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from typing import Any, Callable

from .errors import ConsoleError, UsageError
from .tokens import format_time

VERBS = ("login", "callback", "status", "refresh", "logout", "token", "users", "audit", "health",
         "sandbox", "serve", "web", "migrate", "rotate-key", "refresher", "backup", "restore",
         "import", "export")


# -- small output helpers -----------------------------------------------------------------

def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str), flush=True)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- the service, built per command ---------------------------------------------------------

def _service(args):
    from .config import load_settings
    from .logs import setup_logging
    from .service import AuthService

    settings = load_settings(args.config)
    setup_logging(settings.log_level or None, verbose=args.verbose)
    return AuthService(settings, face="cli")


def _run(args, body: Callable) -> int:
    """Build the service, run one async body, close everything, map errors to exit codes."""
    async def main() -> int:
        service = _service(args)
        try:
            code = await body(service)
        finally:
            for warning in service.store.warnings:
                _err(f"warning: {warning}")
            await service.aclose()
        return code

    return asyncio.run(main())


# -- verbs ----------------------------------------------------------------------------------

def cmd_login(args) -> int:
    async def body(service) -> int:
        start = await service.start_login(args.user, redirect_uri=args.redirect_uri)
        if args.json:
            _json({"authorization_url": start.authorization_url, "state": start.state,
                   "expires_at": start.expires_at, "user_id": start.user_id})
            return 0
        minutes = int(service.settings.pending_ttl // 60)
        _out(f"Log in user '{start.user_id}': open this URL in a browser (valid {minutes} minutes):")
        _out()
        _out(start.authorization_url)
        _out()
        _maybe_qr(start.authorization_url)
        if os.environ.get("CLAUDE_ACCESS_TOKEN"):
            _out("Note: CLAUDE_ACCESS_TOKEN is set; once stored, this login takes precedence over it.")
        if not args.no_browser:
            _open_browser(start.authorization_url)
        if _isatty(sys.stdin) and _isatty(sys.stdout) and not args.no_wait:
            _out("After approving, Claude shows a code. Paste it here (CODE#STATE, the callback URL,")
            try:
                pasted = input("or the bare code), or press Enter to finish later: ").strip()
            except (EOFError, KeyboardInterrupt):
                pasted = ""
            if pasted:
                record = await service.complete_login(pasted, start.user_id, state=start.state)
                _print_logged_in(service, record)
                return 0
        _out("Then finish with:")
        _out(f"  claude-console callback 'CODE#STATE' --user {start.user_id}")
        return 0

    return _run(args, body)


def _maybe_qr(url: str) -> None:
    if not _isatty(sys.stdout):
        return
    from .qr import qr_matrix, size_in_cells, terminal_qr

    cols, rows = size_in_cells(qr_matrix(url))
    size = shutil.get_terminal_size((80, 24))
    if cols <= size.columns and rows + 8 <= size.lines:
        for line in terminal_qr(url, color="NO_COLOR" not in os.environ):
            _out(line)
        _out()
    else:
        _out(f"(A QR code of this URL needs a {cols}x{rows + 8} terminal; this one is "
             f"{size.columns}x{size.lines}.)")


def _open_browser(url: str) -> None:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"):
        return
    import webbrowser

    try:
        if webbrowser.open(url):
            _out("Opened a browser.")
    except webbrowser.Error:
        pass


def _print_logged_in(service, record) -> None:
    left = record.expires_at - time.time()
    from .tokens import format_duration

    who = record.account_email or "unknown account"
    _out(f"Logged in user '{record.user_id}' as {who}; the token expires in {format_duration(left)} "
         f"({format_time(record.expires_at)}).")


def cmd_callback(args) -> int:
    async def body(service) -> int:
        record = await service.complete_login(args.code, args.user_explicit)
        if args.json:
            _json(service.status_report(record, record.user_id))
        else:
            _print_logged_in(service, record)
        return 0

    return _run(args, body)


def _status_lines(report: dict[str, Any]) -> list[str]:
    from .tokens import format_duration

    uid = report["user_id"]
    if report["status"] == "not_logged_in":
        return [f"{uid}: not logged in. Run: claude-console login --user {uid}"]
    left = report["expires_in"]
    status = report["status"]
    when = f"expires in {format_duration(left)}" if left > 0 else f"expired {format_duration(-left)} ago"
    lines = [f"{uid}: {status.replace('_', ' ')}, {when} ({format_time(report['expires_at'])})",
             f"  account  {report['account_email'] or 'unknown'}"
             + (f" ({report['organization']})" if report.get("organization") else ""),
             f"  source   {report['source']}",
             f"  refreshes {report['refresh_count']}, last used {format_time(report['last_used'])}"]
    if status == "needs_login":
        lines.append(f"  the refresh token was rejected. Run: claude-console login --user {uid}")
    elif status == "expired":
        lines.append(f"  no refresh token. Run: claude-console login --user {uid}")
    elif status in ("expiring", "expired_refreshable"):
        lines.append(f"  will refresh on next use, or now with: claude-console refresh --user {uid}")
    if report.get("last_refresh_error"):
        lines.append(f"  last refresh error: {report['last_refresh_error']}")
    return lines


def cmd_status(args) -> int:
    async def body(service) -> int:
        if args.all:
            records = sorted(await service.list_users(), key=lambda r: r.user_id)
            reports = [service.status_report(r, r.user_id) for r in records]
            if args.json:
                _json(reports)
            elif not reports:
                _out("No users are logged in. Run: claude-console login --user NAME")
            else:
                for report in reports:
                    _out("\n".join(_status_lines(report)))
            return 0 if reports and all(r["usable"] for r in reports) else 1
        uid = service.user(args.user)
        record = await service.get_record(uid)
        if record is None and service.store.warnings:
            from .errors import TierUnavailable

            raise TierUnavailable(f"cannot tell whether user {uid!r} is logged in: storage is unreachable",
                                  hint="see the warnings above; claude-console health shows each tier")
        report = service.status_report(record, uid)
        if args.json:
            _json(report)
        else:
            _out("\n".join(_status_lines(report)))
        return 0 if report.get("usable") else 1

    return _run(args, body)


def cmd_refresh(args) -> int:
    async def body(service) -> int:
        from .tokens import format_duration

        users = [r.user_id for r in await service.list_users()] if args.all else [service.user(args.user)]
        if not users:
            _out("No users are logged in.")
            return 1
        failed = 0
        for uid in sorted(users):
            try:
                record = await service.refresh(uid, force=True)
            except ConsoleError as exc:
                if not args.all:
                    raise  # main() prints it once, with its exit code
                failed += 1
                _err(f"{uid}: refresh failed: {exc}")
                continue
            _out(f"{uid}: refreshed; expires in {format_duration(record.expires_at - time.time())}")
        return 1 if failed else 0

    return _run(args, body)


def cmd_logout(args) -> int:
    async def body(service) -> int:
        users = [r.user_id for r in await service.list_users() if r.source != "env"] if args.all \
            else [service.user(args.user)]
        if not users:
            _out("No stored users to log out.")
            return 0
        what = f"{len(users)} users ({', '.join(sorted(users)[:5])}{', …' if len(users) > 5 else ''})" \
            if args.all else f"user '{users[0]}'"
        if not args.yes:
            if not _isatty(sys.stdin):
                raise UsageError(f"refusing to log out {what} without confirmation", hint="pass --yes")
            answer = input(f"Log out {what}? Their stored tokens are deleted. [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                _out("Nothing was changed.")
                return 1
        code = 0
        for uid in sorted(users):
            if await service.logout(uid):
                _out(f"{uid}: logged out")
            else:
                _out(f"{uid}: was not logged in")
                code = 1 if not args.all else code
        return code

    return _run(args, body)


def cmd_token(args) -> int:
    async def body(service) -> int:
        token = await service.get_access_token(args.user)
        sys.stdout.write(token + "\n")
        sys.stdout.flush()
        return 0

    return _run(args, body)


def cmd_users(args) -> int:
    async def body(service) -> int:
        from .tokens import format_duration

        records = sorted(await service.list_users(), key=lambda r: r.user_id)
        reports = [service.status_report(r, r.user_id) for r in records]
        if args.json:
            _json(reports)
            return 0
        if not reports:
            _out("No users are logged in. Run: claude-console login --user NAME")
            return 0
        _out(f"{'USER':<20} {'STATUS':<20} {'EXPIRES IN':>11}  {'REFRESHES':>9}  {'SOURCE':<8} ACCOUNT")
        for r in reports:
            _out(f"{r['user_id'][:20]:<20} {r['status']:<20} {format_duration(r['expires_in']):>11}  "
                 f"{r['refresh_count']:>9}  {r['source']:<8} {r['account_email'] or ''}")
        return 0

    return _run(args, body)


def cmd_audit(args) -> int:
    async def body(service) -> int:
        events = await service.audit_trail(args.user, args.limit)
        if args.json:
            _json([e.to_dict() for e in events])
            return 0
        for e in events:
            mark = "ok" if e.ok else "FAILED"
            _out(f"{format_time(e.ts)}  {e.user_id:<16} {e.action:<15} {mark:<6} {e.actor}  {e.detail}")
        return 0

    return _run(args, body)


def _probe_server(url: str, as_json: bool) -> int:
    """``health --url``: ask a running server (the container's HEALTHCHECK). 0 up, 3 down, 1 silent."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            code, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        _err(f"error: {url} is not answering: {getattr(exc, 'reason', exc)}")
        return 1
    try:
        report = json.loads(raw)
    except ValueError:
        report = {"status": f"HTTP {code}", "tiers": []}
    if as_json:
        _json(report)
    else:
        _out(f"server   {report.get('status', code)} (HTTP {code}, primary tier: {report.get('primary', '?')})")
        for tier in report.get("tiers", []):
            _out(f"{tier.get('name', '?'):<9} {tier.get('state', '?'):<15} {tier.get('detail', '')}")
    return 0 if code == 200 else 3


def cmd_health(args) -> int:
    if getattr(args, "url", None):
        return _probe_server(args.url, args.json)

    async def body(service) -> int:
        health = await service.health()
        if args.json:
            _json([h.to_dict() for h in health])
        else:
            for h in health:
                _out(f"{h.name:<9} {h.state:<15} {h.detail}")
        primary = service.store.primary.name  # only the tier that holds the writes decides
        return 3 if any(h.state == "down" and h.name == primary for h in health) else 0

    return _run(args, body)


def _server_settings(args):
    from .config import load_settings
    from .logs import setup_logging

    settings = load_settings(args.config)
    setup_logging(settings.log_level or None, verbose=args.verbose)
    return settings


def cmd_serve(args) -> int:
    from .api.serve import serve

    return serve(_server_settings(args), host=args.host, port=args.port,
                 insecure_no_auth=args.insecure_no_auth, refresher=args.refresher,
                 access_log=args.access_log)


def cmd_web(args) -> int:
    from .api.web import run_web

    return run_web(_server_settings(args), host=args.host, port=args.port, public_url=args.public_url,
                   insecure_no_auth=args.insecure_no_auth, config=args.config)


def cmd_migrate(args) -> int:
    async def body(service) -> int:
        applied = await service.migrate()
        _out(f"applied {len(applied)} migrations: {', '.join(applied)}" if applied
             else "the database schema is up to date")
        return 0

    return _run(args, body)


def cmd_rotate_key(args) -> int:
    if args.batch < 1:
        raise UsageError("--batch must be 1 or more rows")

    async def body(service) -> int:
        from .errors import UnknownKey

        def progress(report) -> None:
            _out(f"  {report.current} rows under key id {report.key_id} ({report.rotated} re-encrypted)")

        report = await service.rotate_key(batch=args.batch, progress=progress)
        _out(f"re-encrypted {report.rotated} rows and {report.pending_rotated} pending logins to key id "
             f"{report.key_id}; {report.current} rows are under it now")
        if not report.complete:
            left = ", ".join(f"{n} under {kid}" for kid, n in report.unreadable.most_common())
            raise UnknownKey(f"{sum(report.unreadable.values())} rows could not be read and were left as "
                             f"they are ({left})",
                             hint="add their key to CLAUDE_TOKEN_ENCRYPTION_KEY after the new one and "
                                  "run rotate-key again")
        if report.retired:
            _out(f"every row is under key id {report.key_id}: key ids {', '.join(report.retired)} can be "
                 "removed from CLAUDE_TOKEN_ENCRYPTION_KEY on every replica")
        return 0

    return _run(args, body)


def cmd_refresher(args) -> int:
    from .config import load_settings
    from .logs import setup_logging
    from .refresher import run_forever, run_once
    from .service import AuthService

    if args.concurrency < 1 or args.interval <= 0:
        raise UsageError("--concurrency must be 1 or more and --interval more than 0 seconds")
    settings = load_settings(args.config)
    setup_logging(settings.log_level or None, verbose=args.verbose)
    # every refresh in flight holds one connection for its lock: size the pool to match
    settings = settings.replace(database_pool_size=max(settings.database_pool_size, args.concurrency + 4))

    def report(counts) -> None:
        if counts.claimed or args.once:
            _out(f"{format_time(time.time())}  {counts}")

    async def main() -> int:
        service = AuthService(settings, face="refresher")
        try:
            if args.once:
                counts = await run_once(service, concurrency=args.concurrency, interval=args.interval)
                report(counts)
                return 1 if counts.failed else 0
            _out(f"refreshing tokens due within {int(settings.refresh_buffer + 2 * args.interval)}s, "
                 f"every {args.interval:g}s, {args.concurrency} at a time (Ctrl-C stops)")
            await run_forever(service, args.interval, concurrency=args.concurrency, on_pass=report)
            return 0
        finally:
            for warning in service.store.warnings:
                _err(f"warning: {warning}")
            await service.aclose()

    return asyncio.run(main())


# -- backup, restore, import, export ----------------------------------------------------------

PROGRESS_FROM = 1000  # users: runs this big report progress on stderr


def _passphrase(args, *, confirm: bool) -> str:
    """From the variable named by --passphrase-env, else a prompt (twice for a backup). Never argv."""
    import getpass
    import re

    from .backup import MIN_PASSPHRASE

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
        if not _isatty(sys.stdin):
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
    tty = _isatty(sys.stderr)
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
    from .backup import KDFS, check_target, size_text, users_text

    check_target(args.file, args.force)  # before asking for a passphrase
    passphrase = None if args.format == "sql" else _passphrase(args, confirm=True)

    async def body(service) -> int:
        summary = await service.backup(args.file, passphrase, users=args.users, fmt=args.format,
                                       force=args.force, kdf=KDFS[args.kdf], progress=_progress_printer())
        for uid in summary.missing:
            _err(f"warning: user {uid!r} is not stored, so the backup does not hold it")
        if args.json:
            _json(summary.to_dict())
        elif summary.format == "sql":
            _out(f"Wrote {users_text(summary.users)} to {summary.path} ({size_text(summary.bytes)}, mode 0600) as SQL; "
                 "tokens are still encrypted under the store's key.")
            _out(f'Restore with: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f {summary.path}')
        else:
            _out(f"Backed up {users_text(summary.users)} to {summary.path} ({size_text(summary.bytes)}, mode 0600), "
                 f"encrypted with the passphrase ({summary.kdf}, AES-256-GCM).")
            _out(f"Restore with: claude-console restore {summary.path} --dry-run")
        return 1 if summary.missing else 0

    return _run(args, body)


_KIND_TEXT = {"new": "not stored here", "older": "stored token is older", "newer": "stored token is newer",
              "conflict": "conflict", "same": "already as in the backup"}
PLAN_ROWS = 50


def _print_plan(plan) -> None:
    from .backup import users_text

    counts = plan.counts()
    made = f"made {format_time(plan.backup_created_at)}, " if plan.backup_created_at else ""
    _out(f"{plan.path} ({made}{users_text(len(plan.changes))}) against the {plan.tier} store, "
         f"--overwrite {plan.overwrite}:")
    doing = {"add": "added", "replace": "replaced", "keep": "kept", "none": "left as they are"}
    for kind in ("new", "older", "newer", "conflict", "same"):
        actions = sorted({c.action for c in plan.changes if c.kind == kind})
        if actions:
            _out(f"  {kind:<9} {counts[kind]:>7}  {_KIND_TEXT[kind]}: {', '.join(doing[a] for a in actions)}")
    if not plan.changes:
        _out("  (no users to restore)")
    shown = [c for c in plan.changes if c.kind != "same"]
    if shown:
        _out("")
        _out(f"  {'USER':<24} {'CHANGE':<9} {'ACTION':<8} {'STORED UPDATED':<23} {'BACKUP UPDATED':<23}")
        for c in shown[:PLAN_ROWS]:
            stored = format_time(c.stored_updated_at) if c.stored_updated_at is not None else "-"
            _out(f"  {c.user_id[:24]:<24} {c.kind:<9} {c.action:<8} {stored:<23} {format_time(c.backup_updated_at):<23}")
        if len(shown) > PLAN_ROWS:
            _out(f"  … and {len(shown) - PLAN_ROWS} more (--json lists every user)")
    if counts["newer"] or counts["conflict"]:
        if plan.overwrite != "always":
            _out("  Kept tokens stay as they are; --overwrite always would replace them with the backup's.")


def cmd_restore(args) -> int:
    from .backup import check_source, users_text

    check_source(args.file)  # before asking for a passphrase
    passphrase = _passphrase(args, confirm=False)

    async def body(service) -> int:
        progress = _progress_printer()
        contents = await service.open_backup(args.file, passphrase, progress=progress)
        plan = await service.plan_restore(contents, users=args.users, overwrite=args.overwrite)
        for uid in plan.missing:
            _err(f"warning: user {uid!r} is not in the backup")
        if not args.json:
            _print_plan(plan)
        todo = len(plan.to_write)
        if args.dry_run or not todo:
            if args.json:
                _json({"plan": plan.to_dict(), "result": None})
            else:
                _out("Dry run: nothing was written." if args.dry_run else "Nothing to restore: nothing was written.")
            return 1 if plan.missing else 0
        if not args.json and not args.yes and _isatty(sys.stdin):
            try:
                answer = input(f"Write {users_text(todo)} into the {plan.tier} store? [y/N] ").strip().lower()
            except EOFError:
                answer = ""
            if answer not in ("y", "yes"):
                _out("Nothing was changed.")
                return 1
        result = await service.apply_restore(plan, progress=progress)
        if args.json:
            _json({"plan": plan.to_dict(), "result": result.to_dict()})
        else:
            _out(f"Restored {users_text(len(result.written))} in {result.batches} batches ({result.seconds:.1f}s); "
                 f"{result.kept} kept, {result.unchanged} unchanged.")
            if result.changed_meanwhile:
                names = ", ".join(result.changed_meanwhile[:5]) + (", …" if len(result.changed_meanwhile) > 5 else "")
                _out(f"{users_text(len(result.changed_meanwhile))} changed while restoring and kept their newer tokens: "
                     f"{names}")
        return 1 if plan.missing else 0

    return _run(args, body)


def cmd_import(args) -> int:
    async def body(service) -> int:
        from .tokens import format_duration

        result = await service.import_tokens(args.source, getattr(args, "path", None), args.user,
                                             force=args.force)
        record = result.record
        if not result.changed:
            _out(f"User '{record.user_id}' already has the tokens from {result.origin}; nothing was changed.")
            return 0
        left = record.expires_at - time.time()
        when = f"expires in {format_duration(left)}" if left > 0 else f"expired {format_duration(-left)} ago"
        refresh = "with" if record.refresh_token else "without"
        _out(f"Imported user '{record.user_id}' from {result.origin}: {service.status_of(record).value}, {when}, "
             f"{refresh} a refresh token.")
        if args.source == "env":
            _out("The stored token now comes before CLAUDE_ACCESS_TOKEN; you may unset the CLAUDE_* variables.")
        return 0

    return _run(args, body)


def cmd_export(args) -> int:
    async def body(service) -> int:
        record = await service.export_tokens(args.file, args.user, force=args.force)
        _out(f"Exported user '{record.user_id}' to {args.file} (mode 0600) in the seed's token file format "
             "{accessToken, refreshToken, expiresAt}. It holds the tokens in the clear: keep it private.")
        return 0

    return _run(args, body)


class _RefuseOnCommandLine(argparse.Action):
    """``--passphrase``: refused without echoing the value (argv shows in ps and shell history)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted: a passphrase on the command line shows in ps and "
                     "shell history; type it at the prompt, or use --passphrase-env VAR")


def cmd_sandbox(args) -> int:
    from .sandbox import run_sandbox

    return run_sandbox(args)


def cmd_console(args) -> int:
    if not (_isatty(sys.stdin) and _isatty(sys.stdout)):  # a full-screen app needs a terminal
        _out("claude-console: the full-screen console needs a terminal; use a verb: " + ", ".join(VERBS)
             + " (claude-console --help).")
        return 0
    try:
        from .app import run_app
    except ImportError as exc:
        if exc.name not in ("console.app",):
            raise
        _out("The full-screen console is not built yet; use a verb: " + ", ".join(VERBS)
             + " (claude-console --help).")
        return 0
    return run_app(config=args.config, verbose=args.verbose)


# -- parsing --------------------------------------------------------------------------------

def _redact_unrecognized(message: str) -> str:
    """``unrecognized arguments: --passphrase-x SECRET``: never echo what follows a --pass… option."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return message
    words, hide = [], False
    for word in message[len(prefix):].split(" "):
        if hide:
            words.append("…")
            hide = False
        elif word.lower().startswith("--pass"):
            name, eq, _ = word.partition("=")
            words.append(f"{name}=…" if eq else name)
            hide = not eq
        else:
            words.append(word)
    return prefix + " ".join(words)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        message = _redact_unrecognized(message)
        self.exit(2, f"error: {message} (see: claude-console {self.prog.split(' ', 1)[-1]} --help)\n"
                  if " " in self.prog else f"error: {message} (see: claude-console --help)\n")


def build_parser() -> argparse.ArgumentParser:
    def common_options(default):
        # The verbs get SUPPRESS defaults so `claude-console --config X status` keeps X.
        opts = argparse.ArgumentParser(add_help=False)
        opts.add_argument("--config", metavar="PATH", default=default(None),
                          help="config.yaml (default: $CONSOLE_CONFIG)")
        opts.add_argument("--verbose", "-v", action="store_true", default=default(False),
                          help="debug logging (secrets redacted)")
        return opts

    common = common_options(lambda value: value)
    verb_common = common_options(lambda value: argparse.SUPPRESS)

    parser = _Parser(prog="claude-console", parents=[common],
                     description="Claude OAuth tokens: log in, refresh, inspect, log out. "
                                 "With no verb, opens the full-screen console.")
    parser.add_argument("--version", action="version", version="claude-console 0.1.0")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    def verb(name: str, func, help_text: str, user: bool = True, all_users: bool = False):
        p = sub.add_parser(name, parents=[verb_common], help=help_text, description=help_text)
        if user:
            target = p.add_mutually_exclusive_group() if all_users else p
            target.add_argument("--user", "-u", metavar="U",
                                help="user id (default: $CLAUDE_CONSOLE_USER or 'default')")
            if all_users:
                target.add_argument("--all", "-a", action="store_true", help="every stored user")
        p.set_defaults(func=func)
        return p

    p = verb("login", cmd_login, "start a login: prints the URL (and a QR code) to approve")
    p.add_argument("--no-browser", action="store_true", help="never try to open a browser")
    p.add_argument("--no-wait", action="store_true", help="do not prompt for the code")
    p.add_argument("--redirect-uri", metavar="URI", help="override the redirect URI for this login")
    p.add_argument("--json", action="store_true", help="print {authorization_url, state, expires_at}")

    p = verb("callback", cmd_callback, "finish a login with CODE#STATE, the callback URL or the code")
    p.add_argument("code", metavar="CODE", help="CODE#STATE, the full callback URL, or the bare code")
    p.add_argument("--json", action="store_true")

    p = verb("status", cmd_status, "is the token usable? exit 0 yes, 1 no, 2 usage, 3 storage",
             all_users=True)
    p.add_argument("--json", action="store_true")

    verb("refresh", cmd_refresh, "refresh the access token now", all_users=True)

    p = verb("logout", cmd_logout, "delete the stored tokens", all_users=True)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    verb("token", cmd_token, "print only a valid access token (refreshing when needed)")

    p = verb("users", cmd_users, "list every user with status, expiry and source", user=False)
    p.add_argument("--json", action="store_true")

    p = verb("audit", cmd_audit, "show the audit log (who did what to whose token)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")

    p = verb("health", cmd_health, "the state of every storage tier and the key", user=False)
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", metavar="URL", help="ask a running server instead, e.g. "
                   "http://127.0.0.1:4000/health (exit 0 up, 3 primary tier down, 1 no answer)")

    no_auth_help = "allow running without LITELLM_MASTER_KEY; only with --host 127.0.0.1 (or ::1)"
    p = verb("serve", cmd_serve, "serve the HTTP API (OAuth endpoints, /health, /metrics)", user=False)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=4000, help="port (default: 4000; 0 picks a free one)")
    p.add_argument("--insecure-no-auth", action="store_true", help=no_auth_help)
    p.add_argument("--refresher", action="store_true", help="also run the background refresher")
    p.add_argument("--access-log", action="store_true", help="log every request (no bodies)")

    p = verb("web", cmd_web, "serve the console to a browser (textual-serve), behind the master key",
             user=False)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--public-url", metavar="URL", help="the URL browsers use, when behind a proxy")
    p.add_argument("--insecure-no-auth", action="store_true", help=no_auth_help)

    verb("migrate", cmd_migrate, "apply the database migrations that are missing (PostgreSQL)", user=False)

    p = verb("rotate-key", cmd_rotate_key, "re-encrypt every stored row to the first key of "
             "CLAUDE_TOKEN_ENCRYPTION_KEY (online, resumable)", user=False)
    p.add_argument("--batch", type=int, default=500, metavar="N", help="rows per transaction (default: 500)")

    p = verb("refresher", cmd_refresher, "refresh tokens in the background before they expire "
             "(replicas split the work)", user=False)
    p.add_argument("--once", action="store_true", help="one pass, then exit (1 if any refresh failed)")
    p.add_argument("--concurrency", type=int, default=32, metavar="N", help="refreshes at once (default: 32)")
    p.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between passes (default: 60)")

    def passphrase_options(p) -> None:
        p.allow_abbrev = False  # else --passphrase would abbreviate --passphrase-env
        p.add_argument("--passphrase-env", metavar="VAR",
                       help="read the passphrase from this environment variable (default: ask)")
        p.add_argument("--passphrase", nargs="?", action=_RefuseOnCommandLine, help=argparse.SUPPRESS)

    def users_option(p) -> None:
        p.add_argument("--user", "-u", dest="users", metavar="U", nargs="+", action="extend",
                       help="only these users (repeat, or list several)")

    p = verb("backup", cmd_backup, "write every user's tokens to one passphrase-encrypted file (0600)",
             user=False)
    p.add_argument("file", metavar="FILE", help="the backup file to write")
    users_option(p)
    p.add_argument("--format", choices=("portable", "sql"), default="portable",
                   help="portable (default): encrypted with a passphrase, restores anywhere; sql: the "
                        "PostgreSQL table for psql -f, tokens still under the store's key")
    p.add_argument("--kdf", choices=("scrypt", "argon2id"), default="scrypt",
                   help="key derivation for the passphrase (default: scrypt n=2^17 r=8 p=1)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--json", action="store_true")
    passphrase_options(p)

    p = verb("restore", cmd_restore, "show what a backup would change, then write it (never a newer "
             "token over an older one unless --overwrite always)", user=False)
    p.add_argument("file", metavar="FILE", help="a file written by claude-console backup")
    users_option(p)
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.add_argument("--overwrite", choices=("newer", "always", "never"), default="newer",
                   help="newer (default): replace only stored tokens older than the backup's; always: "
                        "replace every one; never: only add users that are not stored")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print the plan and the result as JSON")
    passphrase_options(p)

    p = verb("import", cmd_import, "store tokens from Claude Code, the environment or a token file",
             user=False)
    sources = p.add_subparsers(dest="source", metavar="SOURCE", parser_class=_Parser)
    sources.required = True

    def import_source(name: str, help_text: str):
        s = sources.add_parser(name, parents=[verb_common], help=help_text, description=help_text)
        s.add_argument("--user", "-u", metavar="U",
                       help="store them for this user (default: $CLAUDE_CONSOLE_USER or 'default')")
        s.add_argument("--force", action="store_true",
                       help="replace a stored token even when it expires later than the imported one")
        return s

    s = import_source("claude-code", "Claude Code's credentials (default: ~/.claude/.credentials.json)")
    s.add_argument("path", metavar="PATH", nargs="?", help="the credentials file")
    import_source("env", "CLAUDE_ACCESS_TOKEN, CLAUDE_REFRESH_TOKEN and CLAUDE_EXPIRES_AT")
    s = import_source("file", "the seed's single-user token file {accessToken, refreshToken, expiresAt}")
    s.add_argument("path", metavar="PATH", help="the token file")

    p = verb("export", cmd_export, "write one user's tokens in the seed's token file format (0600)")
    p.add_argument("file", metavar="FILE", help="the file to write")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")

    p = verb("sandbox", cmd_sandbox, "try everything against a local EMULATOR of Claude (no account)",
             user=False)
    p.add_argument("--port", type=int, default=0, help="emulator port (default: any free port)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="emulated provider latency")
    p.add_argument("--shell", action="store_true", help="open $SHELL pointed at the sandbox")
    p.add_argument("--no-tui", action="store_true", help="serve the emulator only; print the settings")
    return parser


def _code_after_dashdash(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """A pasted code may start with '-' (base64url): hand it to ``callback`` after ``--``."""
    if "--" in argv:
        return argv
    options = parser._option_string_actions
    i = 0
    while i < len(argv) and argv[i].startswith("-"):  # global options before the verb
        action = options.get(argv[i].split("=", 1)[0])
        i += 2 if action is not None and action.nargs is None and "=" not in argv[i] else 1
    if i >= len(argv) or argv[i] != "callback":
        return argv
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    known = sub.choices["callback"]._option_string_actions
    kept, codes, takes_value = argv[:i + 1], [], False
    for arg in argv[i + 1:]:
        name = arg.split("=", 1)[0]
        if takes_value or not arg.startswith("-") or name in known:
            kept.append(arg)
            takes_value = not takes_value and name in known and known[name].nargs is None and "=" not in arg
        else:
            codes.append(arg)
    return kept + ["--", *codes] if codes else argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_code_after_dashdash(parser, sys.argv[1:] if argv is None else list(argv)))
    if hasattr(args, "user"):
        args.user_explicit = args.user
    try:
        if args.verb is None:
            return cmd_console(args)
        return args.func(args)
    except ConsoleError as exc:
        _err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted; nothing more was changed")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
