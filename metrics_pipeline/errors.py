"""Failures the scripts report with an exit code instead of a traceback."""


class StartupError(Exception):
    """A server could not be reached at start-up, or refused us (exit code 1)."""


class RunFailure(Exception):
    """The run ended with a failure retrying could not cure (exit code 1)."""
