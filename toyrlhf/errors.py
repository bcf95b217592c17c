"""The one exception type that means "the user asked for something we cannot do" (CLI: one line, exit 2)."""


class UserError(Exception):
    """Bad input: an unknown name, an out-of-range value, a missing or corrupt file. The message is one line."""
