"""`python -m console.emulator`: a standalone sandbox provider for manual runs and demos."""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from .app import create_app
from .state import DEFAULT_ACCESS_TTL, DEFAULT_CLIENT_ID, EmulatorState


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m console.emulator",
        description="Local EMULATOR of Claude's OAuth endpoints. It is not Claude and issues fake tokens.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 lets the OS pick a free port")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every OAuth/API response")
    p.add_argument("--access-ttl", type=int, default=DEFAULT_ACCESS_TTL, help="access token lifetime, seconds")
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    p.add_argument("--no-family-revocation", action="store_true",
                   help="replaying a rotated refresh token does not revoke its family")
    p.add_argument("--omit-refresh-token", action="store_true",
                   help="refresh responses carry no refresh_token (the old one stays valid)")
    args = p.parse_args(argv)
    if args.latency_ms < 0 or args.access_ttl < 0:
        p.error("--latency-ms and --access-ttl must be >= 0")

    state = EmulatorState(
        latency_ms=args.latency_ms,
        access_ttl=args.access_ttl,
        client_id=args.client_id,
        family_revocation=not args.no_family_revocation,
        omit_refresh_token=args.omit_refresh_token,
    )
    # Bind first so the banner can show the real port even with --port 0.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP so asyncio disables Nagle on accepted sockets.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{port}"

    bar = "=" * 72
    print(bar)
    print("  CLAUDE OAUTH EMULATOR  --  this is NOT Claude and NOT Anthropic.")
    print("  Local fake provider for tests and sandbox mode; its tokens work nowhere else.")
    print(bar)
    print(f"  base URL      {base}")
    print(f"  authorize     {base}/oauth/authorize   (auto-approves; ?login_hint=EMAIL picks the account)")
    print(f"  token         {base}/v1/oauth/token")
    print(f"  redirect_uri  {base}/oauth/code/callback")
    print(f"  API base      {base}   (/api/oauth/profile, /v1/messages, ...)")
    print(f"  control       {base}/_emulator/stats | reset | config | faults | revoke | expire | approve")
    print(f"  client_id     {args.client_id}   access_ttl {args.access_ttl}s   latency {args.latency_ms} ms")
    print(bar)
    print("  Ctrl-C to stop.", flush=True)

    config = uvicorn.Config(
        create_app(state), log_level="warning", access_log=False, lifespan="off", ws="none", backlog=2048
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("emulator stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
