"""The one exception type users see: its message is a single readable line."""


class GenzooError(Exception):
    """Bad input or a missing resource; the CLI prints the message and exits non-zero."""


class DataUnavailable(GenzooError):
    """A data file is neither local nor downloadable (offline); a corrupt file is a plain GenzooError."""


class Interrupted(GenzooError):
    """Training stopped on SIGINT or SIGTERM after saving its checkpoint and weights; the message says how to
    resume. The CLI prints it and exits 128 + the signal's number (130, 143), as a shell does for a signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
