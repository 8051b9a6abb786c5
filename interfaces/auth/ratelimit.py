"""Rate limits on the token endpoint and the login form (``limits``: in-memory moving window).

A moving window counts the requests of the last N seconds exactly, so a client cannot send
twice the limit across a window boundary as it could with fixed windows. The counters live
in this process: each replica limits on its own (document the per-replica figure).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimits:
    """``token`` applies per client IP and per client_id; ``login`` per client IP."""

    def __init__(self, token: str, login: str) -> None:
        self.token = _parse(token, "CLINIC_AUTH_TOKEN_RATE_LIMIT")
        self.login = _parse(login, "CLINIC_AUTH_LOGIN_RATE_LIMIT")
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, limit: RateLimitItem, *keys: tuple[str, str]) -> int | None:
        """Count one request against each ``(kind, value)`` key; seconds to wait if any is over, else ``None``."""
        for kind, value in keys:
            if not self._limiter.hit(limit, kind, value):
                reset_at = self._limiter.get_window_stats(limit, kind, value).reset_time
                return max(1, math.ceil(reset_at - time.time()))
        return None


def _parse(text: str, variable: str) -> RateLimitItem:
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"{variable}: {text!r} is not a rate limit (e.g. 60/minute, 10 per 1 second)") from None
