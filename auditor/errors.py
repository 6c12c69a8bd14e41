"""User-facing errors of the auditor side (bad data, bad options).

Both these and ``converters.errors.ModelError`` end a CLI command with one message and exit 2.
"""

from converters.errors import ModelError


class AuditorError(ModelError):
    """The tool cannot do its job with what it was given; the message says what to change."""


class DataError(AuditorError):
    """A data file or folder is missing, corrupt, or not in a supported format."""
