"""Authentication and authorisation, written once for every transport.

REST, WebSocket, SSE and gRPC all call :meth:`Guard.authorize` with the request's token and the
:class:`~execdist.domain.access.Action` the request needs; each transport only renders the
outcome its own way::

    Unauthenticated   no token, or not one of ours       -> 401 / UNAUTHENTICATED
    Forbidden         a valid token of another scope      -> 403 / PERMISSION_DENIED
    NotLoaded         the worker is still reading tokens  -> 503 / UNAVAILABLE
"""

from execdist.auth.guard import Forbidden, Guard, TokenLookup, Unauthenticated

__all__ = ["Forbidden", "Guard", "TokenLookup", "Unauthenticated"]
