"""Rater tokens that only this server can issue: a random nonce and its HMAC under the install's secret.

A rater is whoever holds a token, so a token a client could make up would let one script vote as
a thousand raters. The server signs each token it issues (to a browser as the rater cookie, to an
API client from ``/rater_token``) and accepts only tokens whose signature checks; issuing is limited
per IP address, so new raters cannot be minted faster than people arrive from one network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from app.guard import InvalidInput, RateLimiter

NEW_RATER_WINDOW_S = 3600.0
_NONCE_BYTES = 24  # 32 url-safe characters
_TOKEN = re.compile(r"(?P<nonce>[A-Za-z0-9_-]{32})\.(?P<signature>[A-Za-z0-9_-]{43})")


class RaterTokens:
    """Issues and checks signed rater tokens; ``per_ip_per_hour`` new tokens at most from one address."""

    def __init__(self, install_secret: bytes, per_ip_per_hour: int) -> None:
        # A key of its own, so a token's signature says nothing about the rater ids keyed by the secret.
        self._key = hmac.new(install_secret, b"raphael rater token", hashlib.sha256).digest()
        self._issued = RateLimiter(per_ip_per_hour, NEW_RATER_WINDOW_S)

    def _sign(self, nonce: str) -> str:
        digest = hmac.new(self._key, nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, ip: str | None) -> str:
        """A new token for a client at ``ip``; InvalidInput when that address has had its share this hour."""
        try:
            self._issued.hit(ip or "unknown", "new raters")
        except InvalidInput as err:
            raise InvalidInput(
                "Too many new raters came from your network in the last hour; please try again later."
            ) from err
        nonce = secrets.token_urlsafe(_NONCE_BYTES)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: object) -> bool:
        """Whether ``token`` is one this server issued (constant-time signature check)."""
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        return match is not None and hmac.compare_digest(match["signature"], self._sign(match["nonce"]))
