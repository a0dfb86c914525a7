"""``claude-console usage``: what Claude says each account has used, and its plan.

Reads the stored answers (``console/usage_poll.py`` keeps them); ``--fresh`` asks Claude now
for one user, still under the shared lease, so two operators pressing it make one request.
"""

from __future__ import annotations

import time

from ..users import shown
from ..usage import bar, level
from .output import emit_json, out, run


def usage_lines(public: dict) -> list[str]:
    """One user's facts as the terminal shows them (every window, readable without colour)."""
    from ..tokens import format_duration, format_time

    plan = public.get("plan") or "plan unknown"
    lines = [f"{shown(public['user_id'])}: {plan}"
             + (f", {public['profile'].get('organization_name')}" if public.get("profile")
                and public["profile"].get("organization_name") else "")]
    for w in public["windows"]:
        resets = f"resets in {format_duration(w['resets_at'] - time.time())}" if w.get("resets_at") else ""
        mark = {"high": " (>= 80%)", "full": " (>= 95%)"}.get(level(w["utilization"]), "")
        lines.append(f"  {w['label']:<14} {w['utilization']:5.1f}% {bar(w['utilization'], 10)}{mark}  {resets}".rstrip())
    extra = public.get("extra_usage")
    if extra and extra.get("is_enabled"):
        lines.append(f"  extra usage    {extra.get('used_credits') or 0:g} of {extra.get('monthly_limit') or 0:g} "
                     "credits this month")
    if public.get("fetched_at"):
        lines.append(f"  fetched {format_time(public['fetched_at'])} by {public.get('fetched_by') or '?'}")
    elif not public.get("error"):
        lines.append("  usage not fetched yet")
    if public.get("error"):
        lines.append(f"  last usage error: {public['error']}")
    if public.get("profile_error"):
        lines.append(f"  {public['profile_error']}")
    return lines


def cmd_usage(args) -> int:
    async def body(service) -> int:
        if args.all:
            users = sorted(r.user_id for r in await service.list_users())
            if args.fresh:  # each under its lease: a user asked within the interval is not asked again
                for uid in users:
                    await service.usage(uid, fresh=True)
            facts = await service.usage_of(users)
            publics = [facts[u].public() if u in facts else _empty(u) for u in users]
        else:
            publics = [(await service.usage(args.user, fresh=args.fresh)).public()]
        if args.json:
            emit_json(publics if args.all else publics[0])
            return 0
        if not publics:
            out("No users are logged in. Run: claude-console login --user NAME")
            return 0
        for public in publics:
            out("\n".join(usage_lines(public)))
        return 0

    return run(args, body)


def _empty(uid: str) -> dict:
    from ..usage import empty_public

    return empty_public(uid)
