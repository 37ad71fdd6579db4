"""The one exception type for bad user input, shared by every poisonlab module.

The CLI turns it into a one-line message and exit code 2; library users catch a ``ValueError``.
"""


class InputError(ValueError):
    """Input a user can fix (config, data, files); the message names the problem and the fix."""


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (for one-line errors); its class name if it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
