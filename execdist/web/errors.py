"""The contract's error objects: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from aiohttp import web

from execdist.domain.errors import ExecDistError


class HttpError(ExecDistError):
    """Raised by a view; rendered as the contract's error object with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.field)


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status)
