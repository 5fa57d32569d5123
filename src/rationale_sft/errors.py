"""The error a user can cause and fix: bad input data, files, keys or values."""


class InputError(ValueError):
    """Bad input; the message says what was wrong (file, column, key, subject), what is allowed, how to fix it."""
