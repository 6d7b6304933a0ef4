"""The one exception type users see: its message is a single readable line."""


class GenzooError(Exception):
    """Bad input or a missing resource; the CLI prints the message and exits non-zero."""
