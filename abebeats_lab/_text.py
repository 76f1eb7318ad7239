"""Text from outside (a provider's failure message, an error body) kept to a readable size.

A provider can answer with megabytes of error text; stored whole it bloats the run store
and the report, printed whole it buries the terminal. The first few KiB say what happened.
"""

from __future__ import annotations

__all__ = ["ERROR_TEXT_CHARS", "cut"]

ERROR_TEXT_CHARS = 4096
"""Characters of an error text kept in a row or printed; the full length is noted."""


def cut(text: str, limit: int = ERROR_TEXT_CHARS) -> str:
    """``text`` unchanged when short, else its first ``limit`` characters and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text):,} chars, cut]"
