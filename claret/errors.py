"""The one error of the client side, in a module of its own so that the CLI can catch it without importing
gRPC (``claret --help`` and ``claret serve`` never need the client)."""

from __future__ import annotations

__all__ = ["ClientError"]


class ClientError(Exception):
    """A failure to show as one line: the platform's refusal (with its code) or a problem on this side."""

    def __init__(self, message: str, code: int | None = None, messages: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # one line, whatever the server wrote
        self.code = code
        """The platform's negative ``ResponseHeader.code``; None for a failure on this side or in transport."""
        self.messages = messages
        """The header's messages as the platform sent them (``message`` is them joined on one line)."""

    def __str__(self) -> str:
        return self.message if self.code is None else f"{self.message} (code {self.code})"
