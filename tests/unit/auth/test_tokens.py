"""Tokens: only a well-formed, unexpired access token signed by one of our keys is accepted."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest

from micro.auth import Account, AccountType, InvalidToken, KeySet, key_id
from micro.auth.tokens import issue, verify

ALICE = Account("alice", AccountType.USER, ("read", "write"), {"team": "a"})


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return KeySet.generate()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _forge(token: str, change: dict[str, object]) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(change)
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def test_a_good_token_gives_its_account(keys: KeySet) -> None:
    token = issue(keys, ALICE, issuer="micro", ttl=60)
    assert verify(keys, token, issuer="micro") == ALICE


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_both_algorithms(algorithm: str) -> None:
    keys = KeySet.generate(algorithm)  # type: ignore[arg-type]
    token = issue(keys, ALICE, issuer="micro", ttl=60)
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert verify(keys, token, issuer="micro").id == "alice"


def bad_tokens(keys: KeySet) -> dict[str, str]:
    good = issue(keys, ALICE, issuer="micro", ttl=60)
    header = {"alg": "none", "typ": "JWT", "kid": keys.kid}
    claims = {"iss": "micro", "sub": "root", "iat": int(time.time()), "exp": 2**40}
    claims |= {"kind": "access", "scopes": ["admin"]}
    unsigned = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    hs256 = jwt.encode(claims, b"k" * 32, algorithm="HS256", headers={"kid": keys.kid})
    return {
        "expired": issue(keys, ALICE, issuer="micro", ttl=60, now=time.time() - 3600),
        "other key": issue(KeySet.generate(), ALICE, issuer="micro", ttl=60),
        "alg none": unsigned,
        "hmac with our kid": hs256,
        "tampered payload": _forge(good, {"scopes": ["admin"]}),
        "tampered subject": _forge(good, {"sub": "root"}),
        "truncated": good[: len(good) // 2],
        "no signature": good.rsplit(".", 1)[0] + ".",
        "other issuer": issue(keys, ALICE, issuer="elsewhere", ttl=60),
        "refresh as access": issue(keys, ALICE, issuer="micro", ttl=60, kind="refresh"),
        "empty": "",
        "garbage": "not a token at all",
        "huge": "a" * 20000,
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "other key",
        "alg none",
        "hmac with our kid",
        "tampered payload",
        "tampered subject",
        "truncated",
        "no signature",
        "other issuer",
        "refresh as access",
        "empty",
        "garbage",
        "huge",
    ],
)
def test_bad_tokens_are_refused(keys: KeySet, case: str) -> None:
    token = bad_tokens(keys)[case]
    with pytest.raises(InvalidToken) as info:
        verify(keys, token, issuer="micro")
    assert info.value.code == 401
    if len(token) > 20:
        assert token not in str(info.value)


def test_rotation_keeps_old_tokens_until_the_old_key_is_retired(keys: KeySet) -> None:
    old = issue(keys, ALICE, issuer="micro", ttl=60)
    rotated = keys.rotate()
    assert rotated.kid != keys.kid
    new = issue(rotated, ALICE, issuer="micro", ttl=60)
    assert verify(rotated, old, issuer="micro").id == "alice"
    assert verify(rotated, new, issuer="micro").id == "alice"
    with pytest.raises(InvalidToken):
        verify(keys, new, issuer="micro")  # the old set does not know the new key
    assert keys.kid is not None
    retired = rotated.retire(keys.kid)
    with pytest.raises(InvalidToken):
        verify(retired, old, issuer="micro")
    assert verify(retired, new, issuer="micro").id == "alice"
    with pytest.raises(ValueError, match="signing key"):
        rotated.retire(rotated.kid or "")


def test_keys_save_and_load(tmp_path: Path, keys: KeySet) -> None:
    rotated = keys.rotate()
    rotated.save(tmp_path / "keys")
    assert (tmp_path / "keys" / "signing.pem").stat().st_mode & 0o777 == 0o600
    loaded = KeySet.load(tmp_path / "keys")
    assert loaded.kid == rotated.kid
    assert set(loaded.public_keys) == set(rotated.public_keys)
    token = issue(loaded, ALICE, issuer="micro", ttl=60)
    verifier = loaded.verify_only()
    verifier.save(tmp_path / "public")
    public = KeySet.load(tmp_path / "public")
    assert public.signing is None
    assert verify(public, token, issuer="micro").id == "alice"
    with pytest.raises(ValueError, match="no signing key"):
        issue(public, ALICE, issuer="micro", ttl=60)
    # One PEM file works too; the kid names the key.
    loaded_one = KeySet.load(tmp_path / "keys" / "signing.pem")
    assert loaded_one.kid == rotated.kid
    assert rotated.signing is not None
    assert key_id(rotated.signing.public_key()) == rotated.kid


def test_bad_key_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(ValueError, match=r"bad\.pem"):
        KeySet.load(tmp_path / "bad.pem")
    with pytest.raises(FileNotFoundError):
        KeySet.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no keys"):
        KeySet.load(tmp_path / "empty")


def test_token_repr_hides_the_tokens(keys: KeySet) -> None:
    from micro.auth import Auth

    token = Auth(keys).issue(ALICE)
    assert token.access_token not in repr(token)
    assert token.refresh_token not in repr(token)
