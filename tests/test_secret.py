"""Keys never show themselves, and text a server echoes them in is masked."""

from __future__ import annotations

import base64

from abebeats_lab.errors import ProviderError
from abebeats_lab.secret import MASK, Secret, scrub

CANARY = "key_canary_7f3a9c"


def test_secret_never_shows_itself() -> None:
    secret = Secret(CANARY)
    assert CANARY not in repr(secret) and CANARY not in str(secret)
    assert CANARY not in f"{secret!r} {secret}"
    assert secret.reveal() == CANARY


def test_an_echoed_key_is_masked_plain_and_inside_base64() -> None:
    key = Secret("echoed_key_91c2e4")
    basic = base64.b64encode(f"user:{key.reveal()}".encode()).decode()
    text = scrub(f"bad auth: Bearer {key.reveal()} / Basic {basic}")
    assert key.reveal() not in text and basic not in text
    assert text.count(MASK) == 2


def test_errors_scrub_what_a_provider_said() -> None:
    key = Secret("provider_key_55d0aa")
    error = ProviderError(f"invalid key {key.reveal()}", provider="runway")
    assert key.reveal() not in str(error) and MASK in str(error)
