"""The HTTP stack: stock httpx, one client per event loop, and the one retry policy.

`client` holds the shared client (`Lease`, `leased`, `new_client`, `LIMITS`, timeouts);
`retry` the retry policy, its hints and the table of who retries what; `answers` reading an
answer under a size cap. The names other modules use are re-exported here, so
``from abebeats_lab.http import send`` reads as before.
"""

from __future__ import annotations

from abebeats_lab.http.answers import (
    BOUNDED_ENCODINGS,
    MAX_ANSWER_BYTES,
    check_encoding,
    json_body,
    read_answer,
    too_large,
)
from abebeats_lab.http.client import (
    DEFAULT_TIMEOUT,
    LIMITS,
    USER_AGENT,
    Lease,
    from_emulator,
    is_http_error,
    leased,
    never_sent,
    new_client,
)
from abebeats_lab.http.retry import (
    DEFAULT_RETRY,
    RETRY_STATUSES,
    SEND_ONCE,
    RetryPolicy,
    error_from,
    header_hint,
    retry_delay,
    retry_errors,
    retry_hint,
    send,
    should_retry,
)

__all__ = [
    "BOUNDED_ENCODINGS",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "LIMITS",
    "MAX_ANSWER_BYTES",
    "RETRY_STATUSES",
    "SEND_ONCE",
    "USER_AGENT",
    "Lease",
    "RetryPolicy",
    "check_encoding",
    "error_from",
    "from_emulator",
    "header_hint",
    "is_http_error",
    "json_body",
    "leased",
    "never_sent",
    "new_client",
    "read_answer",
    "retry_delay",
    "retry_errors",
    "retry_hint",
    "send",
    "should_retry",
    "too_large",
]
