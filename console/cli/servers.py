"""Verbs that run or inspect the product's processes and schema: health, serve, web, migrate,
rotate-key, refresher, sandbox."""

from __future__ import annotations

import json
import os
import time

from ..errors import UsageError
from ..tokens import count_text, format_time
from .output import cli_settings, emit_json, err, out, run


def _probe_server(url: str, as_json: bool) -> int:
    """``health --url``: ask a running server (the container's HEALTHCHECK). 0 up, 3 down, 1 silent."""
    import urllib.error
    import urllib.request

    from ..config import check_url

    check_url("health --url", url, ("http", "https"))
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            code, raw = resp.status, resp.read(1024 * 1024)
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read(1024 * 1024)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        err(f"error: {url} is not answering: {getattr(exc, 'reason', exc)}")
        return 1
    try:
        report = json.loads(raw)
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("tiers", []), list) or "status" not in report:
        err(f"error: {url} answered HTTP {code}, but not as the health endpoint does; "
            "use the server's /health URL, e.g. http://127.0.0.1:4000/health")
        return 1
    if as_json:
        emit_json(report)
    else:
        out(f"server   {report.get('status', code)} (HTTP {code}, primary tier: {report.get('primary', '?')})")
        for tier in report.get("tiers", []):
            out(f"{tier.get('name', '?'):<9} {tier.get('state', '?'):<15} {tier.get('detail', '')}")
    return 0 if code == 200 else 3


def cmd_health(args) -> int:
    if getattr(args, "url", None):
        return _probe_server(args.url, args.json)

    async def body(service) -> int:
        health = await service.health(rows=True)
        if args.json:
            emit_json([h.to_dict() for h in health])
        else:
            for h in health:
                out(f"{h.name:<9} {h.state:<15} {h.detail}")
        # a rotated token not yet stored, or users whose tokens are under a key not configured
        held = any(h.state in ("held", "locked") for h in health)
        return 0 if service.primary_up(health) and not held else 3  # the write tier decides, and held tokens

    return run(args, body)


def cmd_serve(args) -> int:
    from ..api.serve import serve

    return serve(cli_settings(args), host=args.host, port=args.port,
                 insecure_no_auth=args.insecure_no_auth, refresher=args.refresher,
                 access_log=args.access_log, header_timeout=args.header_timeout)


def cmd_web(args) -> int:
    from ..api.web import run_web

    return run_web(cli_settings(args), host=args.host, port=args.port, public_url=args.public_url,
                   insecure_no_auth=args.insecure_no_auth, config=args.config)


def cmd_migrate(args) -> int:
    async def body(service) -> int:
        applied = await service.migrate()
        out(f"applied {count_text(len(applied), 'migration')}: {', '.join(applied)}" if applied
            else "the database schema is up to date")
        return 0

    return run(args, body)


def cmd_rotate_key(args) -> int:
    if args.batch < 1:
        raise UsageError("--batch must be 1 or more rows")

    async def body(service) -> int:
        from ..errors import UnknownKey

        def progress(report) -> None:
            out(f"  {count_text(report.current, 'row')} under key id {report.key_id} ({report.rotated} re-encrypted)")

        report = await service.rotate_key(batch=args.batch, progress=progress)
        now_under = "1 row is" if report.current == 1 else f"{report.current} rows are"
        out(f"re-encrypted {count_text(report.rotated, 'row')} and {count_text(report.pending_rotated, 'pending login')} "
            f"to key id {report.key_id}; {now_under} under it now")
        if not report.complete:
            left = ", ".join(f"{n} under {kid}" for kid, n in report.unreadable.most_common())
            unread = sum(report.unreadable.values())
            was = "was left as it is" if unread == 1 else "were left as they are"
            raise UnknownKey(f"{count_text(unread, 'row')} could not be read and {was} ({left})",
                             hint="add their key to CLAUDE_TOKEN_ENCRYPTION_KEY after the new one and "
                                  "run rotate-key again")
        if report.retired:
            out(f"every row is under key id {report.key_id}: key ids {', '.join(report.retired)} can be "
                "removed from CLAUDE_TOKEN_ENCRYPTION_KEY on every replica")
        return 0

    return run(args, body)


def cmd_refresher(args) -> int:
    from ..refresher import run_forever, run_once
    from ..service import AuthService

    if args.concurrency < 1 or args.interval <= 0:
        raise UsageError("--concurrency must be 1 or more and --interval more than 0 seconds")
    settings = cli_settings(args)
    # every refresh in flight holds one connection for its lock: size the pool to match
    settings = settings.replace(database_pool_size=max(settings.database_pool_size, args.concurrency + 4))

    def report(counts) -> None:
        if counts.claimed or args.once:
            out(f"{format_time(time.time())}  {counts}")

    async def body(service) -> int:
        if args.once:
            counts = await run_once(service, concurrency=args.concurrency, interval=args.interval)
            report(counts)
            return 1 if counts.failed else 0
        out(f"refreshing tokens due within {int(settings.refresh_buffer + 2 * args.interval)}s, "
            f"every {args.interval:g}s, {args.concurrency} at a time (Ctrl-C stops)")
        await run_forever(service, args.interval, concurrency=args.concurrency, on_pass=report)
        return 0

    return run(args, body, make_service=lambda _: AuthService(settings, face="refresher"))


def cmd_sandbox(args) -> int:
    from .sandbox import run_sandbox

    if getattr(args, "qr_style", None):  # the console and the shell it opens both read it
        os.environ["CLAUDE_CONSOLE_QR_STYLE"] = args.qr_style
    return run_sandbox(args)
