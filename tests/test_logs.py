import io
import logging
import time

from console.logs import redact, setup_logging


def test_redact_covers_every_secret_shape():
    samples = {
        "Authorization: Bearer sk-ant-oat01-AbC123_xyz": "AbC123_xyz",
        "{'authorization': 'Bearer abc.def.ghi'}": "abc.def.ghi",
        '{"access_token": "opaque-access-123", "x": 1}': "opaque-access-123",
        '{"refresh_token":"opaque-refresh-456"}': "opaque-refresh-456",
        "code=the-code-789&state=s": "the-code-789",
        '{"code": "json-code-000", "code_verifier": "verifier-abcdef"}': "json-code-000",
        "code_verifier=verifier-qwerty": "verifier-qwerty",
        "accessToken='camel-secret-1'": "camel-secret-1",
        "got sk-ant-ort01-SECRET-rotated in the body": "SECRET-rotated",
    }
    for line, secret in samples.items():
        assert secret not in redact(line), line


async def test_debug_logging_of_a_full_flow_leaks_nothing(service, login, emulator):
    stream = io.StringIO()
    setup_logging(verbose=True, stream=stream)
    try:
        start = await service.start_login("alice")
        approved = emulator.approve(start.authorization_url)
        record = await service.complete_login(approved["pasted"])
        stored = await service.store.get_fresh("alice")
        await service.store.put(stored.evolve(expires_at=time.time() - 1), stored.version)
        service.forget()
        emulator.state.add_fault("refresh", 503, count=1)
        fresh_token = await service.get_access_token("alice")
        fresh = await service.store.get_fresh("alice")
        pending = approved["code"]
        # Log the secrets directly too, as careless code might.
        log = logging.getLogger("console.test")
        log.debug("tokens %s %s", record.access_token, {"refresh_token": record.refresh_token})
        log.debug("headers %r", service.get_headers(fresh_token))
    finally:
        setup_logging("WARNING")
    output = stream.getvalue()
    assert "retrying" in output or "HTTP" in output  # something was logged at DEBUG
    for secret in (record.access_token, record.refresh_token, fresh.access_token, fresh.refresh_token,
                   pending, start.state and approved["code"]):
        assert secret not in output
    verifier_like = [w for w in output.split() if len(w) > 60 and "-" not in w[:10]]
    assert not verifier_like
