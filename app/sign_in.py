"""Optional sign-in with a Hugging Face account, where the host runs the demo as a Space with OAuth.

A Space whose README metadata says ``hf_oauth: true`` gets ``OAUTH_CLIENT_ID``, ``OAUTH_CLIENT_SECRET``,
``OAUTH_SCOPES`` and ``OPENID_PROVIDER_URL`` from Hugging Face; with ``--sign-in`` the page then shows Gradio's
"Sign in with Hugging Face" button, Gradio's OAuth routes put the account into a signed session cookie, and each
rater is stored with the account they signed in with. Signing in stays optional: a rater is still whoever holds a
signed rater token, so anonymous votes keep counting. Outside a Space Gradio would mock the sign-in with the
machine's own Hugging Face login, which is no one's real account, so ``--sign-in`` refuses to start there.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gradio.utils import get_space

ACCOUNT_PREFIX = "hf:"  # the provider, so that another one can be added without mixing names
OAUTH_VARIABLES = ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL")


def check_sign_in_available() -> None:
    """Raise ValueError, naming the flag, when this process cannot offer a real sign-in."""
    missing = [name for name in OAUTH_VARIABLES if not os.environ.get(name)]
    if get_space() is None or missing:
        raise ValueError(
            "--sign-in needs a Hugging Face Space with hf_oauth: true in its README metadata "
            f"({'not running on a Space' if get_space() is None else 'missing ' + ', '.join(missing)})."
        )


def signed_in_account(request: Any) -> str | None:
    """The account of the person behind ``request`` (``hf:<username>``) while their sign-in is valid, else None.

    Gradio's OAuth keeps the user's info in the session (``oauth_info``, with ``expires_at``); the session is only
    there when the sign-in button installed its middleware, so without sign-in every request is anonymous.
    """
    underlying = getattr(request, "request", None) or request
    scope = getattr(underlying, "scope", None)
    session = scope.get("session") if isinstance(scope, dict) else None
    info = session.get("oauth_info") if isinstance(session, dict) else None
    if not isinstance(info, dict):
        return None
    expires_at = info.get("expires_at")
    if isinstance(expires_at, int | float) and expires_at < time.time():
        return None
    username = (info.get("userinfo") or {}).get("preferred_username")
    return f"{ACCOUNT_PREFIX}{username}" if isinstance(username, str) and username else None
