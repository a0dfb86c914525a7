"""Verbs on one user's tokens (or every user's): login, callback, status, refresh, logout,
token, users, audit."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from typing import Any

from ..errors import ConsoleError, UsageError
from ..tokens import count_text, format_time
from ..users import fix_command, shown
from .output import emit_json, err, isatty, out, run


def cmd_login(args) -> int:
    if args.port is not None and not args.loopback:
        raise UsageError("--port is for --loopback logins", hint="add --loopback, or leave out --port")
    if args.loopback:
        if args.redirect_uri:
            raise UsageError("--loopback sets the redirect URI itself", hint="leave out --redirect-uri")
        if args.port is not None and not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port} is not a port", hint="give 1-65535, or leave it out")
        return _login_loopback(args)

    async def body(service) -> int:
        start = await service.start_login(args.user, redirect_uri=args.redirect_uri,
                                          long_lived=args.long_lived)
        if args.json:
            emit_json({"authorization_url": start.authorization_url, "state": start.state,
                       "expires_at": start.expires_at, "user_id": start.user_id})
            return 0
        from ..tokens import format_span

        valid = format_span(service.settings.pending_ttl)
        out(f"Log in user '{shown(start.user_id)}': open this URL in a browser (valid {valid}):")
        out()
        out(start.authorization_url)
        out()
        _maybe_qr(start.authorization_url, getattr(args, "qr_style", None) or service.settings.qr_style)
        if os.environ.get("CLAUDE_ACCESS_TOKEN"):
            out("Note: CLAUDE_ACCESS_TOKEN is set; once stored, this login takes precedence over it.")
        if not args.no_browser:
            _open_browser(start.authorization_url)
        if isatty(sys.stdin) and isatty(sys.stdout) and not args.no_wait:
            out("After approving, Claude shows a code. Paste it here (CODE#STATE, the callback URL,")
            try:
                pasted = input("or the bare code), or press Enter to finish later: ").strip()
            except (EOFError, KeyboardInterrupt):
                pasted = ""
            if pasted:
                record = await service.complete_login(pasted, start.user_id, state=start.state)
                _print_logged_in(service, record)
                return 0
        out("Then finish with:")
        out(f"  {fix_command('callback', start.user_id, shlex.quote('CODE#STATE'))}")
        return 0

    return run(args, body)


def _login_loopback(args) -> int:
    import asyncio
    import threading

    from ..loopback import LoopbackListener, login_by_loopback

    async def body(service) -> int:
        listener = await LoopbackListener(args.port or 0).open()
        loop = asyncio.get_running_loop()
        pasted = loop.create_future() if isatty(sys.stdin) and not args.no_wait else None

        def on_start(start) -> None:
            minutes = int(service.settings.pending_ttl // 60)
            if args.json:
                emit_json({"authorization_url": start.authorization_url, "state": start.state,
                           "expires_at": start.expires_at, "user_id": start.user_id,
                           "redirect_uri": listener.redirect_uri})
            else:
                out(f"Log in user '{start.user_id}': open this URL in a browser (valid {minutes} minutes):")
                out()
                out(start.authorization_url)
                out()
                _maybe_qr(start.authorization_url, getattr(args, "qr_style", None) or service.settings.qr_style)
                out(f"Waiting for the browser on {listener.redirect_uri} (from another machine: "
                    f"ssh -L {listener.port}:localhost:{listener.port} THIS-HOST).")
            if not args.no_browser:
                _open_browser(start.authorization_url)
            if pasted is not None:
                out("Or paste the code Claude shows (CODE#STATE, the callback URL or the bare code):")

                def read() -> None:  # a daemon thread: left blocked on input() when the browser wins
                    try:
                        text = input().strip()
                    except (EOFError, KeyboardInterrupt):
                        text = ""
                    loop.call_soon_threadsafe(lambda: pasted.done() or pasted.set_result(text))

                threading.Thread(target=read, daemon=True).start()

        record = await login_by_loopback(service, args.user, listener, long_lived=args.long_lived,
                                         on_start=on_start, pasted=pasted)
        if record is None:
            out("The login was finished elsewhere (or a newer one was started); nothing more to do here.")
            return 0
        _print_logged_in(service, record)
        return 0

    return run(args, body)


def _maybe_qr(url: str, requested: str = "auto") -> None:
    if not isatty(sys.stdout):
        return
    from ..qr import QUIET_ZONE, STYLES, choose_style, qr_matrix, size_in_cells, terminal_qr

    size = shutil.get_terminal_size((80, 24))
    need = {style: size_in_cells(qr_matrix(url, QUIET_ZONE[style]), style) for style in STYLES}
    fits = {style: cols <= size.columns and rows + 8 <= size.lines for style, (cols, rows) in need.items()}
    style = choose_style(requested, fits)
    cols, rows = need[style]
    if fits[style]:
        for line in terminal_qr(url, color="NO_COLOR" not in os.environ, style=style):
            out(line, raw=True)
        out()
    else:
        out(f"(A QR code of this URL needs a {cols}x{rows + 8} terminal; this one is "
            f"{size.columns}x{size.lines}.)")


def _open_browser(url: str) -> None:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"):
        return
    import webbrowser

    try:
        if webbrowser.open(url):
            out("Opened a browser.")
    except webbrowser.Error:
        pass


def _print_logged_in(service, record) -> None:
    left = record.expires_at - time.time()
    from ..tokens import format_duration

    who = record.account_email or "unknown account"
    kind = "long-lived token (never refreshed)" if record.long_lived else "token"
    out(f"Logged in user '{shown(record.user_id)}' as {who}; the {kind} expires in {format_duration(left)} "
        f"({format_time(record.expires_at)}).")


def _pasted_code(given: str | None) -> str:
    """The code from the argument, standard input (``-``) or the terminal's prompt (not echoed)."""
    if given == "-":
        return sys.stdin.readline(8193).strip()
    if given is not None:
        return given
    if not isatty(sys.stdin):
        raise UsageError("no code was given", hint="pass CODE#STATE, or - to read it from standard input")
    import getpass

    return getpass.getpass("Paste the code (CODE#STATE, the callback URL or the bare code; not shown): ")


def cmd_callback(args) -> int:
    code = _pasted_code(args.code)

    async def body(service) -> int:
        record = await service.complete_login(code, args.user_explicit)
        if args.json:
            emit_json(service.status_report(record, record.user_id))
        else:
            _print_logged_in(service, record)
        return 0

    return run(args, body)


def _status_lines(report: dict[str, Any]) -> list[str]:
    from ..tokens import format_duration

    uid, raw_uid = shown(report["user_id"]), report["user_id"]
    if report["status"] == "not_logged_in":
        return [f"{uid}: not logged in. Run: {fix_command('login', raw_uid)}"]
    left = report["expires_in"]
    status = report["status"]
    if status == "locked":
        return [f"{uid}: locked: its tokens are under key id {report['locked_key']}, which is not configured",
                "  add that key to CLAUDE_TOKEN_ENCRYPTION_KEY (comma-separated, new key first), "
                f"or log in again: {fix_command('login', raw_uid)}"]
    when = f"expires in {format_duration(left)}" if left > 0 else f"expired {format_duration(-left)} ago"
    kind = " (long-lived)" if report.get("long_lived") else ""
    lines = [f"{uid}: {status.replace('_', ' ')}{kind}, {when} ({format_time(report['expires_at'])})",
             f"  account  {report['account_email'] or 'unknown'}"
             + (f" ({report['organization']})" if report.get("organization") else ""),
             f"  source   {report['source']}",
             f"  refreshes {report['refresh_count']}, last used {format_time(report['last_used'])}"]
    if report.get("long_lived"):
        lines.append("  long-lived token (user:inference only): never refreshed; log in again when it expires")
    if status == "needs_login":
        lines.append(f"  the refresh token was rejected. Run: {fix_command('login', raw_uid)}")
    elif status in ("account_disabled", "oauth_not_allowed"):
        lines.append("  Claude refused the organization; the tokens are kept and not refreshed. Once resolved "
                     f"run: {fix_command('refresh', raw_uid)} (or log in again)")
    elif status == "expired":
        lines.append(f"  no refresh token. Run: {fix_command('login', raw_uid)}")
    elif status in ("expiring", "expired_refreshable"):
        lines.append(f"  will refresh on next use, or now with: {fix_command('refresh', raw_uid)}")
    if report.get("last_refresh_error"):
        lines.append(f"  last refresh error: {report['last_refresh_error']}")
    if report.get("held_locally"):
        lines.append(f"  user {uid}'s new token is held locally, not yet stored: it is written when the "
                     "store takes it (claude-console health shows the store)")
    return lines


def cmd_status(args) -> int:
    async def body(service) -> int:
        if args.all:
            records = sorted(await service.list_users(), key=lambda r: r.user_id)
            reports = [service.status_report(r, r.user_id) for r in records]
            if args.json:
                emit_json(reports)
            elif not reports:
                out("No users are logged in. Run: claude-console login --user NAME")
            else:
                for report in reports:
                    out("\n".join(_status_lines(report)))
            return 0 if reports and all(r["usable"] and not r.get("held_locally") for r in reports) else 1
        uid = service.user(args.user)
        # A primary tier that cannot be asked raises here; a None from it (the cache down or
        # not) means the user is not logged in.
        record = await service.get_record(uid)
        report = service.status_report(record, uid)
        if args.json:
            emit_json(report)
        else:
            out("\n".join(_status_lines(report)))
        return 0 if report.get("usable") and not report.get("held_locally") else 1

    return run(args, body)


def cmd_refresh(args) -> int:
    async def body(service) -> int:
        from ..tokens import format_duration

        users = [r.user_id for r in await service.list_users()] if args.all else [service.user(args.user)]
        if not users:
            out("No users are logged in.")
            return 1
        failed = 0
        for uid in sorted(users):
            try:
                record = await service.refresh(uid, force=True)
            except ConsoleError as exc:
                if not args.all:
                    raise  # main() prints it once, with its exit code
                failed += 1
                err(f"{shown(uid)}: refresh failed: {exc}")
                continue
            out(f"{shown(uid)}: refreshed; expires in {format_duration(record.expires_at - time.time())}")
        return 1 if failed else 0

    return run(args, body)


def cmd_logout(args) -> int:
    async def body(service) -> int:
        users = [r.user_id for r in await service.list_users() if r.source != "env"] if args.all \
            else [service.user(args.user)]
        if not users:
            out("No stored users to log out.")
            return 0
        what = f"{count_text(len(users), 'user')} ({', '.join(shown(u) for u in sorted(users)[:5])}" \
            f"{', …' if len(users) > 5 else ''})" if args.all else f"user '{shown(users[0])}'"
        if not args.yes:
            if not isatty(sys.stdin):
                raise UsageError(f"refusing to log out {what} without confirmation", hint="pass --yes")
            answer = input(f"Log out {what}? Their stored tokens are deleted. [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                out("Nothing was changed.")
                return 1
        code = 0
        for uid in sorted(users):
            if await service.logout(uid):
                out(f"{shown(uid)}: logged out")
            else:
                out(f"{shown(uid)}: was not logged in")
                code = 1 if not args.all else code
        return code

    return run(args, body)


def cmd_token(args) -> int:
    async def body(service) -> int:
        token = await service.get_access_token(args.user)
        sys.stdout.write(token + "\n")
        sys.stdout.flush()
        return 0

    return run(args, body)


def cmd_exec(args) -> int:
    """Run CMD with a valid access token in CLAUDE_CODE_OAUTH_TOKEN; CMD's exit code is ours."""
    from ..handoff import child_environment

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("exec needs a command to run", hint="e.g. claude-console exec --user U -- claude")
    program = command[0] if os.sep in command[0] else shutil.which(command[0])
    if program is None or not os.access(program, os.X_OK):
        missing = ConsoleError(f"command not found: {command[0]}", hint="check the name and PATH; nothing was run")
        missing.exit_code = 127
        raise missing
    handed: dict[str, str] = {}

    async def body(service) -> int:
        record = await service.hand_out(args.user, f"exec:{os.path.basename(command[0])}")
        handed["token"] = record.access_token
        return 0

    run(args, body)
    env = child_environment(os.environ, handed.pop("token"))
    sys.stdout.flush()
    sys.stderr.flush()
    try:  # the child replaces this process: its exit code and signals are the caller's directly
        os.execve(program, command, env)
    except OSError as exc:
        failed = ConsoleError(f"cannot run {command[0]}: {exc.strerror}", hint="nothing was run")
        failed.exit_code = 126
        raise failed from None


def cmd_users(args) -> int:
    async def body(service) -> int:
        from ..tokens import format_duration

        records = sorted(await service.list_users(), key=lambda r: r.user_id)
        reports = [service.status_report(r, r.user_id) for r in records]
        if args.json:
            emit_json(reports)
            return 0
        if not reports:
            out("No users are logged in. Run: claude-console login --user NAME")
            return 0
        out(f"{'USER':<20} {'STATUS':<20} {'EXPIRES IN':>11}  {'REFRESHES':>9}  {'SOURCE':<8} ACCOUNT")
        for r in reports:
            word = r["status"] + (" long-lived" if r.get("long_lived") else "")
            if r["status"] == "locked":
                word = f"locked (key {r['locked_key']})"
            out(f"{shown(r['user_id'], 20):<20} {word:<20} {format_duration(r['expires_in']):>11}  "
                f"{r['refresh_count']:>9}  {r['source']:<8} {r['account_email'] or ''}")
        return 0

    return run(args, body)


def cmd_audit(args) -> int:
    async def body(service) -> int:
        events = await service.audit_trail(args.user, args.limit) if args.limit else []
        if args.json:
            emit_json([e.to_dict() for e in events])
            return 0
        for e in events:
            mark = "ok" if e.ok else "FAILED"
            out(f"{format_time(e.ts)}  {shown(e.user_id, 16):<16} {e.action:<15} {mark:<6} {e.actor}  {e.detail}")
        return 0

    return run(args, body)
