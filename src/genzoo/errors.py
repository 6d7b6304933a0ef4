"""The one exception type users see: its message is a single readable line."""


class GenzooError(Exception):
    """Bad input or a missing resource; the CLI prints the message and exits non-zero."""


class DataUnavailable(GenzooError):
    """A data file is neither local nor downloadable (offline); a corrupt file is a plain GenzooError."""
