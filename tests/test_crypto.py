import base64
import os

import pytest
from cryptography.fernet import Fernet

from console.crypto import Keyring, generate_key, is_encrypted, key_id
from console.errors import ConfigError, CryptoError, NoKeyConfigured, UnknownKey


def test_round_trip_with_key_id_and_user_binding():
    key = generate_key()
    ring = Keyring.from_spec(key)
    value = ring.encrypt("sk-ant-oat01-secret", "alice")
    assert value.startswith(f"enc:v1:{ring.primary_id}:")
    assert "secret" not in value
    assert ring.decrypt(value, "alice") == "sk-ant-oat01-secret"
    # The user id is associated data: the same ciphertext on another user's row fails.
    with pytest.raises(CryptoError, match="failed authentication"):
        ring.decrypt(value, "bob")


def test_nonce_is_fresh_each_time():
    ring = Keyring.from_spec(generate_key())
    assert ring.encrypt("x", "u") != ring.encrypt("x", "u")


def test_first_key_encrypts_all_decrypt():
    old, new = generate_key(), generate_key()
    old_ring = Keyring.from_spec(old)
    legacy = old_ring.encrypt("token", "u")
    both = Keyring.from_spec(f"{new}, {old}")
    assert both.decrypt(legacy, "u") == "token"
    fresh = both.encrypt("token", "u")
    assert both.value_key_id(fresh) == key_id(base64.urlsafe_b64decode(new))
    assert both.needs_rotation(legacy) and not both.needs_rotation(fresh)


def test_unknown_key_id_names_it():
    value = Keyring.from_spec(generate_key()).encrypt("t", "u")
    other = Keyring.from_spec(generate_key())
    kid = value.split(":")[2]
    with pytest.raises(UnknownKey, match=kid):
        other.decrypt(value, "u")
    with pytest.raises(NoKeyConfigured):
        Keyring([]).decrypt(value, "u")


def test_tampered_ciphertext_is_refused():
    ring = Keyring.from_spec(generate_key())
    value = ring.encrypt("token", "u")
    body = value.rsplit(":", 1)[1]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(CryptoError):
        ring.decrypt(value.rsplit(":", 1)[0] + ":" + flipped, "u")


def test_seed_fernet_values_still_read():
    key = generate_key()
    legacy = Fernet(key.encode()).encrypt(b"sk-ant-ort01-old").decode()
    assert is_encrypted(legacy)
    ring = Keyring.from_spec(key)
    assert ring.decrypt(legacy, "anyone") == "sk-ant-ort01-old"
    assert ring.needs_rotation(legacy)
    with pytest.raises(UnknownKey):
        Keyring.from_spec(generate_key()).decrypt(legacy, "u")


def test_standard_base64_keys_accepted_and_bad_keys_rejected():
    raw = os.urandom(32)
    assert Keyring.from_spec(base64.b64encode(raw).decode()).keys == [raw]
    with pytest.raises(ConfigError, match="32 bytes"):
        Keyring.from_spec("not-a-key")
    with pytest.raises(ConfigError):
        Keyring.from_spec(base64.b64encode(b"short").decode())


def test_plaintext_passes_through_unencrypted_values():
    assert Keyring([]).decrypt("sk-ant-oat01-plain", "u") == "sk-ant-oat01-plain"
    assert not is_encrypted("sk-ant-oat01-plain")
