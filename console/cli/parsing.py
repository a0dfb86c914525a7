"""The parser and ``main``: argv -> one verb -> an exit code."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import ConsoleError
from ..users import check_user_id
from .accounts import (cmd_audit, cmd_callback, cmd_exec, cmd_login, cmd_logout, cmd_refresh,
                       cmd_status, cmd_token, cmd_users)
from .doctor import cmd_doctor
from .files import RefuseOnCommandLine, cmd_backup, cmd_export, cmd_import, cmd_restore
from .output import err, isatty, out
from .servers import (cmd_health, cmd_migrate, cmd_refresher, cmd_rotate_key, cmd_sandbox, cmd_serve,
                      cmd_web)

VERBS = ("login", "callback", "status", "refresh", "logout", "token", "exec", "users", "audit", "health",
         "doctor", "sandbox", "serve", "web", "migrate", "rotate-key", "refresher", "backup", "restore",
         "import", "export")


def cmd_console(args) -> int:
    # A full-screen app needs a terminal, or a driver that stands for one (textual-serve's
    # web driver, which `claude-console web` runs the console under, speaks over pipes).
    web = "web_driver" in os.environ.get("TEXTUAL_DRIVER", "")
    if not (isatty(sys.stdin) and isatty(sys.stdout)) and not web:
        err("error: the full-screen console needs a terminal; use a verb: " + ", ".join(VERBS)
            + " (claude-console --help)")
        return 2
    from ..app import run_app

    return run_app(config=args.config, verbose=args.verbose, qr_style=args.qr_style)


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


def user_arg(value: str) -> str:
    """``--user``: the engine's user-id rule, at the boundary (so ``--user ''`` is an error)."""
    try:
        return check_user_id(value)
    except ConsoleError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def seconds_arg(value: str) -> float:
    """A finite number of seconds above 0 and at most an hour (``--header-timeout``)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a number of seconds") from None
    if not 0 < number <= 3600:   # NaN fails this too
        raise argparse.ArgumentTypeError(f"{value[:40]} is not between 0 and 3600 seconds")
    return number


def count_arg(value: str) -> int:
    """A whole number of 0 or more (``--limit``)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number} is negative; give 0 or more")
    return number


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
    parser.add_argument("--version", action="version", version=f"claude-console {__version__}")
    qr_help = ("how the login QR code is drawn: half blocks, sextants (a third fewer rows; needs a "
               "terminal that draws U+1FB00 block characters) or auto (default: claude_oauth.qr_style)")
    parser.add_argument("--qr-style", choices=("auto", "half", "sextant"), help=qr_help)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    def verb(name: str, func, help_text: str, user: bool = True, all_users: bool = False):
        p = sub.add_parser(name, parents=[verb_common], help=help_text, description=help_text)
        if user:
            target = p.add_mutually_exclusive_group() if all_users else p
            target.add_argument("--user", "-u", metavar="U", type=user_arg,
                                help="user id (default: $CLAUDE_CONSOLE_USER or 'default')")
            if all_users:
                target.add_argument("--all", "-a", action="store_true", help="every stored user")
        p.set_defaults(func=func)
        return p

    p = verb("login", cmd_login, "start a login: prints the URL (and a QR code) to approve")
    p.add_argument("--no-browser", action="store_true", help="never try to open a browser")
    p.add_argument("--no-wait", action="store_true", help="do not prompt for the code")
    p.add_argument("--redirect-uri", metavar="URI", help="override the redirect URI for this login")
    p.add_argument("--long-lived", action="store_true",
                   help="a long-lived token as `claude setup-token` gets: a year, inference only, no refresh "
                        "token, never refreshed")
    p.add_argument("--loopback", action="store_true",
                   help="let the browser come back to http://localhost:N/callback (same machine, or ssh -L "
                        "N:localhost:N); a pasted code still works")
    p.add_argument("--port", type=int, metavar="N", help="the loopback port (default: a free one)")
    p.add_argument("--json", action="store_true", help="print {authorization_url, state, expires_at}")
    p.add_argument("--qr-style", choices=("auto", "half", "sextant"), default=argparse.SUPPRESS,
                   help=qr_help)

    p = verb("callback", cmd_callback, "finish a login with CODE#STATE, the callback URL or the code")
    p.add_argument("code", metavar="CODE", nargs="?",
                   help="CODE#STATE, the full callback URL, or the bare code; '-' reads it from standard "
                        "input, and without CODE a terminal asks for it (a code on the command line is "
                        "visible to other users in ps)")
    p.add_argument("--json", action="store_true")

    p = verb("status", cmd_status, "is the token usable? exit 0 yes, 1 no, 2 usage, 3 storage",
             all_users=True)
    p.add_argument("--json", action="store_true")

    verb("refresh", cmd_refresh, "refresh the access token now", all_users=True)

    p = verb("logout", cmd_logout, "delete the stored tokens", all_users=True)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    verb("token", cmd_token, "print only a valid access token (refreshing when needed)")

    p = verb("exec", cmd_exec, "run CMD (e.g. claude) with a valid access token in CLAUDE_CODE_OAUTH_TOKEN; "
             "the refresh token stays here; CMD's exit code is passed through")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run")

    p = verb("users", cmd_users, "list every user with status, expiry and source", user=False)
    p.add_argument("--json", action="store_true")

    p = verb("audit", cmd_audit, "show the audit log (who did what to whose token)")
    p.add_argument("--limit", type=count_arg, default=50, metavar="N",
                   help="at most N events, newest first (default: 50; 0 prints nothing)")
    p.add_argument("--json", action="store_true")

    p = verb("health", cmd_health, "the state of every storage tier and the key", user=False)
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", metavar="URL", help="ask a running server instead, e.g. "
                   "http://127.0.0.1:4000/health (exit 0 up, 3 primary tier down, 1 no answer)")

    p = verb("doctor", cmd_doctor, "check configuration, storage, the key, the network and Claude's token "
             "endpoint (with --user: a profile call); exit 0 when all pass")
    p.add_argument("--json", action="store_true")

    no_auth_help = "allow running without LITELLM_MASTER_KEY; only with --host 127.0.0.1 (or ::1)"
    p = verb("serve", cmd_serve, "serve the HTTP API (OAuth endpoints, /health, /metrics)", user=False)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=4000, help="port (default: 4000; 0 picks a free one)")
    p.add_argument("--insecure-no-auth", action="store_true", help=no_auth_help)
    p.add_argument("--refresher", action="store_true", help="also run the background refresher")
    p.add_argument("--access-log", action="store_true", help="log every request (no bodies)")
    p.add_argument("--header-timeout", type=seconds_arg, default=10.0, metavar="SECONDS",
                   help="close a connection whose request line and headers take longer (default: 10)")

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
        p.add_argument("--passphrase", nargs="?", action=RefuseOnCommandLine, help=argparse.SUPPRESS)

    def users_option(p) -> None:
        p.add_argument("--user", "-u", dest="users", metavar="U", nargs="+", action="extend", type=user_arg,
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
        s.add_argument("--user", "-u", metavar="U", type=user_arg,
                       help="store them for this user (default: $CLAUDE_CONSOLE_USER or 'default')")
        s.add_argument("--force", action="store_true",
                       help="replace a stored token even when it expires later than the imported one")
        return s

    s = import_source("claude-code", "Claude Code's credentials (default: ~/.claude/.credentials.json)")
    s.add_argument("path", metavar="PATH", nargs="?", help="the credentials file")
    s = import_source("env", "CLAUDE_ACCESS_TOKEN, CLAUDE_REFRESH_TOKEN and CLAUDE_EXPIRES_AT, or a "
                             "long-lived setup token in CLAUDE_CODE_OAUTH_TOKEN")
    s.add_argument("--expires-at", metavar="WHEN",
                   help="the token's expiry: seconds or milliseconds since the epoch, or an ISO-8601 time "
                        "(a setup token's is otherwise taken as a year from now)")
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
    p.add_argument("--qr-style", choices=("auto", "half", "sextant"), default=argparse.SUPPRESS,
                   help=qr_help)
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
        err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted; nothing more was changed")
        return 130
    except BrokenPipeError:  # `claude-console users | head -1`: the reader left; leave quietly
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
