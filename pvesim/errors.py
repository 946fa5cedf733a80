"""API errors shaped like pve-http-server's: text in the status line, JSON message body."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answer. `body=False` sends an empty body (401s, proxy failures)."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: dict[str, str] | None = None,
        body: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.body = body

    @property
    def reason(self) -> str:
        """The HTTP reason phrase: the first line of the message, as PVE sends it."""
        return self.message.strip().split("\n", 1)[0]


def param_error(errors: dict[str, str]) -> ApiError:
    """400 Parameter verification failed, with the per-parameter messages."""
    return ApiError(400, "Parameter verification failed.", errors=errors)


def internal(message: str) -> ApiError:
    """PVE's default for a `die` inside a handler: HTTP 500 with the message."""
    return ApiError(500, message)
