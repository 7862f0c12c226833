"""Exceptions that the command line turns into one-line messages and exit codes."""


class FastinvError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""

    exit_code = 1


class UsageError(FastinvError):
    """A bad flag, value or path given on the command line (exit code 2)."""

    exit_code = 2


class DataError(FastinvError):
    """A dataset, image or checkpoint that is missing or malformed (exit code 2)."""

    exit_code = 2


class MissingExtraError(FastinvError):
    """An optional backend was requested but its extra is not installed (exit code 2)."""

    exit_code = 2

    def __init__(self, what: str, extra: str, cause: BaseException | None = None):
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'fastinv[{extra}]'{detail}")
