"""The one error class for input the user has to fix.

    try: museforge.generate("lyrics", "")
    except museforge.UserError as e: print(e)     # give a prompt: ...

Every problem a user can fix (a bad option, a missing or unreadable file, a model that does not
fit the task) raises a subclass of `UserError` with a single line that names the input and the
fix. The CLI prints that line and exits with code 2; the app shows it as one gr.Error. Anything
else that escapes is a bug. `UserError` is a ValueError, so `except ValueError` keeps working.
The catalogue of bad inputs and their messages is docs/bad-inputs.md.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user has to fix; the message is one line naming the input and the fix."""

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))  # one line, whatever was interpolated


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (also a FileNotFoundError)."""
