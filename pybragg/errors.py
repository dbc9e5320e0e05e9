"""Exceptions raised by pybragg.  The command line maps them to exit codes."""

from __future__ import annotations


class PybraggError(Exception):
    """Base class of every error pybragg raises on purpose (exit code 1)."""

    exit_code = 1


class UsageError(PybraggError, ValueError):
    """A bad flag, value or combination on the command line (exit code 2)."""

    exit_code = 2


class EngineError(PybraggError, RuntimeError):
    """An engine refused the configuration or failed while rendering."""


class BackendUnavailable(PybraggError, RuntimeError):
    """The requested engine or device cannot be used here."""


class ResourceLimitError(PybraggError, MemoryError):
    """An input would need more memory (or another resource) than the machine or the limit allows."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP ended the command (the command line's handlers raise it); exit
    code 128 + the signal's number (130 for SIGINT).  A KeyboardInterrupt, so whatever stops on
    Ctrl-C (the engines) stops on it too."""

    def __init__(self, signo: int = 2):
        super().__init__(signo)
        self.signo = int(signo)

    @property
    def exit_code(self) -> int:
        return 128 + self.signo
