"""Failures the scripts report with an exit code instead of a traceback."""


class StartupError(Exception):
    """A server could not be reached at start-up, or refused us (exit code 1)."""


class RunFailure(Exception):
    """The run ended with a failure retrying could not cure (exit code 1)."""


class StartupStopped(Exception):
    """SIGINT/SIGTERM while a script was still waiting for a server at start-up: nothing
    was sent, read or stored yet, so this is a normal end (exit code 0)."""
