"""argon2id password hashing at OWASP's settings (m=19 MiB, t=2, p=1)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@cache
def _decoy_hash() -> str:
    return hash_password("microshop decoy password")


def spend_verification_time(password: str) -> None:
    """Verify against a decoy hash, so an unknown user costs as much as a wrong password."""
    verify_password(_decoy_hash(), password)
