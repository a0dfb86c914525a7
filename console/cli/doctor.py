"""``doctor``: one line per check with ✓ or ✗ and the fix; exit 0 when all pass, 1 otherwise."""

from __future__ import annotations

from ..errors import ConfigError
from .output import build_service, emit_json, out, run


def cmd_doctor(args) -> int:
    from ..doctor import Check

    try:
        service_of = build_service
        from .output import cli_settings

        cli_settings(args)  # a configuration that does not load is the first failed check
    except ConfigError as exc:
        check = Check("configuration", False, exc.message, exc.hint or "fix the file or variable it names")
        emit_json([check.to_dict()]) if args.json else out(check.line())
        return 1

    async def body(service) -> int:
        checks = await service.doctor(args.user_explicit)
        if args.json:
            emit_json([c.to_dict() for c in checks])
        else:
            for check in checks:
                out(check.line())
        return 0 if all(c.ok for c in checks) else 1

    return run(args, body, service_of)
