"""HTTP to slurmrestd: JSON in and out, a JSON Web Token in every request, renewed once on a 401.

slurmrestd's ``rest_auth/jwt`` takes the token in ``X-SLURM-USER-TOKEN`` and the user name in
``X-SLURM-USER-NAME``: Slurm 22.05 refuses a token without it (401, its OpenAPI description too), later
releases read it from the token; the client sends the name the token itself carries (``token_user``)
unless the caller named a user. slurmrestd does not check the token itself:
slurmctld or slurmdbd does, when slurmrestd passes a request on (so ``/openapi/v3`` answers any token).
Tokens expire; when a request is refused for its token (``rejected``) the client asks the caller's
``renew_token`` for a new one and tries that request once more. A second refusal is an error, so a token
that can never work does not loop.

urllib3 (imported here, and this module only when a REST backend is built) keeps the connection open
between polls; its own retries are off: the SDK decides what is retried (``BackendError.transient``), and
a submission whose answer was lost is looked up, never sent again blindly.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

try:
    import urllib3
except ImportError as missing:  # an optional dependency: the extra `rest`
    raise ImportError(
        "the REST backend needs urllib3; fix: pip install 'slurm-sdk[rest]' (or urllib3 itself)"
    ) from missing

from slurm.errors import BackendError, is_transient_message

TOKEN_HEADER = "X-SLURM-USER-TOKEN"
USER_HEADER = "X-SLURM-USER-NAME"
#: Statuses after which the same request may well succeed: slurmrestd or a gateway restarting, overload.
_TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
#: Slurm's ESLURM_PROTOCOL_AUTHENTICATION_ERROR: slurmctld or slurmdbd refused the credential.
_AUTH_ERROR = 1007


class TokenRejected(BackendError):
    """slurmrestd refused the token (401), also after renewing it where a renewal was possible."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # the decoded JSON (None for an empty body)


def rejected(reply: Reply) -> bool:
    """Whether the token was refused: slurmrestd's own 401, or slurmctld/slurmdbd refusing what slurmrestd
    passed on (an expired or forged token), which slurmrestd 24.11 answers with HTTP 511 and Slurm's
    error 1007, "Protocol authentication error"."""
    if reply.status in (401, 511):
        return True
    errors = reply.body.get("errors") if isinstance(reply.body, Mapping) else None
    return any(isinstance(e, Mapping) and e.get("error_number") == _AUTH_ERROR for e in errors or [])


def token_user(token: str) -> str | None:
    """The user name a token from ``scontrol token`` carries (its payload's ``sun`` claim), or None for a
    token that is no JWT or names none. Read, not verified: slurmctld checks the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    user = claims.get("sun") if isinstance(claims, Mapping) else None
    return user if isinstance(user, str) and user else None


def error_text(body: Any) -> str:
    """The messages of slurmrestd's ``errors`` list (``error`` and ``description`` of each), one line."""
    if not isinstance(body, Mapping):
        return ""
    parts = []
    for error in body.get("errors") or []:
        if isinstance(error, Mapping):
            words = [str(error.get(key)) for key in ("description", "error") if error.get(key)]
            parts.append(": ".join(dict.fromkeys(words)))
    return "; ".join(part for part in parts if part)


class RestClient:
    """Requests to one slurmrestd at ``url`` (``http://host:port``), authenticated by ``token``."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        user: str | None = None,
        renew_token: Callable[[], str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise BackendError(f"slurmrestd URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.user = user
        self.renew_token = renew_token
        self._token = token
        self._lock = threading.Lock()
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout), retries=False
        )

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        """``method path`` with ``body`` as JSON. A refused token renews the token (when ``renew_token``
        was given) and sends the request once more; a refusal after that raises ``TokenRejected``. A connection that
        fails or drops before the answer raises a transient ``BackendError``."""
        token = self._current_token()
        reply = self._send(method, path, body, token)
        if not rejected(reply):
            return reply
        if self.renew_token is None:
            raise TokenRejected(
                f"slurmrestd at {self.url} refused the token (HTTP {reply.status}) for {method} {path}: "
                f"{error_text(reply.body) or 'no detail'}; fix: give a fresh token (`scontrol token` on a "
                "login node), or a renew_token callable that fetches one"
            )
        renewed = self._renew(token)
        reply = self._send(method, path, body, renewed)
        if rejected(reply):
            raise TokenRejected(
                f"slurmrestd at {self.url} refused a freshly renewed token too (HTTP {reply.status}) for {method} {path}: "
                f"{error_text(reply.body) or 'no detail'}; fix: check that slurmctld and slurmdbd have "
                "AuthAltTypes=auth/jwt with the key slurmrestd's tokens are signed with, and that the "
                "renewal returns a token for the right user"
            )
        return reply

    def _current_token(self) -> str | None:
        with self._lock:
            if self._token is None and self.renew_token is not None:
                self._token = self.renew_token()
            return self._token

    def _renew(self, rejected: str | None) -> str:
        """A new token, unless another thread renewed the rejected one meanwhile (then that one)."""
        assert self.renew_token is not None
        with self._lock:
            if self._token == rejected:
                self._token = self.renew_token()
            return self._token or ""

    def _send(self, method: str, path: str, body: Any, token: str | None) -> Reply:
        headers = {"Accept": "application/json"}
        if token:
            headers[TOKEN_HEADER] = token
        user = self.user or (token_user(token) if token else None)
        if user:
            headers[USER_HEADER] = user
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._pool.request(method, self.url + path, body=data, headers=headers)
        except urllib3.exceptions.HTTPError as error:
            raise BackendError(
                f"{method} {self.url}{path}: no answer from slurmrestd ({error}); is it running and "
                "reachable from here?",
                transient=True,
            ) from error
        text = response.data.decode("utf-8", "replace")
        try:
            decoded = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            decoded = {"errors": [{"error": text.strip()[:500]}]}
        return Reply(response.status, decoded)

    def check(self, reply: Reply, what: str) -> Any:
        """The body of a successful reply; else a ``BackendError`` naming ``what`` was asked and why it
        failed (transient for a restarting server or a transient Slurm message)."""
        if 200 <= reply.status < 300:
            return reply.body
        detail = error_text(reply.body) or f"HTTP {reply.status}"
        raise BackendError(
            f"slurmrestd at {self.url}: {what} failed (HTTP {reply.status}): {detail}",
            transient=reply.status in _TRANSIENT_STATUSES or is_transient_message(detail),
        )

    def close(self) -> None:
        self._pool.clear()
