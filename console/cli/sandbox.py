"""``claude-console sandbox``: the whole product against a local emulator, no account needed.

Starts the provider emulator on 127.0.0.1, points every endpoint at it, keeps tokens in a
private temporary folder (deleted on exit), and says loudly that none of it is Claude.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

_CLEARED = ("DATABASE_URL", "REDIS_URL", "CLAUDE_ACCESS_TOKEN", "CLAUDE_REFRESH_TOKEN",
            "CLAUDE_EXPIRES_AT", "CLAUDE_TOKEN_ENCRYPTION_KEY", "CONSOLE_CONFIG",
            "CLAUDE_OAUTH_REFRESH_STYLE", "CLAUDE_OAUTH_REFRESH_URL", "CLAUDE_OAUTH_CLIENT_ID")


def sandbox_env(base_url: str, folder: str) -> dict[str, str]:
    """The variables that point a console at an emulator and a private token file."""
    return {
        "CLAUDE_OAUTH_AUTHORIZE_URL": f"{base_url}/oauth/authorize",
        "CLAUDE_OAUTH_TOKEN_URL": f"{base_url}/v1/oauth/token",
        "CLAUDE_OAUTH_REDIRECT_URI": f"{base_url}/oauth/code/callback",
        "CLAUDE_API_BASE_URL": base_url,
        "CLAUDE_TOKEN_FILE": os.path.join(folder, "claude_tokens.json"),
        "CLAUDE_CONSOLE_SANDBOX": base_url,
    }


def run_sandbox(args) -> int:
    from ..emulator import EmulatorServer

    def _hang_up(signum, frame):  # a closed terminal or killed tmux: still clean up below
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGHUP, _hang_up)
    folder = tempfile.mkdtemp(prefix="claude-console-sandbox-")
    os.chmod(folder, 0o700)
    server = EmulatorServer(port=args.port)
    server.start()
    if args.latency_ms:
        server.state.configure(latency_ms=args.latency_ms)
    env = sandbox_env(server.url, folder)
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update(env)
    banner = [
        "SANDBOX: every OAuth and API call goes to a local EMULATOR of Claude, not to Claude.",
        f"  emulator  {server.url}  (tokens are fake; approve logins at the printed URL)",
        f"  storage   {folder}  (deleted when the sandbox stops)",
    ]
    try:
        if args.shell:
            print("\n".join(banner + ["Opening a shell; `exit` stops the sandbox."]), flush=True)
            shell = os.environ.get("SHELL", "/bin/sh")
            return subprocess.call([shell], env=os.environ.copy())
        if not args.no_tui and sys.stdout.isatty():
            from ..app import run_app

            return run_app(sandbox=server.url)
        print("\n".join(banner + ["Point another shell at it with:"]), flush=True)
        for key, value in env.items():
            print(f"  export {key}={value}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
