"""Keys as `Secret` values that never show themselves, and `scrub`, which masks them in text.

Every key this process holds as a `Secret` is remembered with the forms a server may echo it
in (plain, or inside base64 as in a Basic header), so a provider's error text can be cleaned
before it reaches an exception, a row, the terminal or a report. It sits below `errors`,
which scrubs every message it is given.
"""

from __future__ import annotations

import base64
import threading

__all__ = ["MASK", "Secret", "scrub"]

MIN_SECRET_CHARS = 8
"""Shorter values are not scrubbed: masking every "abc" in a message would garble it, and no
provider issues keys that short."""
MASK = "***"
_BASE64_ALIGNMENTS = 3
"""base64 encodes 3 bytes at a time, so a key inside a longer encoded text (``user:key`` in
a Basic header) takes one of three shapes, one per offset of the key in the text."""


class _Registry:
    """Every secret value this process holds, and the forms a server may echo them in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: list[str] = []

    def add(self, value: str) -> None:
        if len(value) < MIN_SECRET_CHARS:
            return
        forms = [value, *_base64_forms(value)]
        with self._lock:
            known = set(self._forms)
            # Longest first, so a form that contains another is masked whole.
            self._forms = sorted(known | set(forms), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


def _base64_forms(value: str) -> list[str]:
    """The runs of base64 text that any encoding containing ``value`` must include."""
    raw = value.encode()
    forms = []
    for offset in range(_BASE64_ALIGNMENTS):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # Drop the characters that depend on the bytes before and after the key.
        start = 4 * ((offset + 2) // 3)
        end = 4 * ((offset + len(raw)) // 3)
        if end - start >= MIN_SECRET_CHARS:
            forms.append(encoded[start:end])
    return forms


_LIVE = _Registry()


def scrub(text: str) -> str:
    """``text`` with every secret this process holds (as a `Secret`) replaced by ``***``.

    Applied where a provider's words enter our errors and rows: a server that echoes the
    ``Authorization`` header (``Bearer``/``Key``/``Token`` and the key, or its base64
    form) must not put the key into the store, the terminal or a report.
    """
    return _LIVE.scrub(text)


class Secret:
    """A string that never shows itself in a repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        _LIVE.add(value)

    def reveal(self) -> str:
        """The real value, for the one place that puts it in a header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
