"""The option parser of the subcommands that take their own options before ``--``.

``compare``, ``trace``, ``series`` and ``stills`` parse their options with :class:`Parser`:
a bad option is a :class:`~pybragg.errors.UsageError` (one line, exit 2) and ``--help``
raises :class:`HelpShown`, which the subcommand turns into exit code 0.
"""

from __future__ import annotations

import argparse
import sys

from pybragg.errors import UsageError


class HelpShown(Exception):
    """``--help`` was printed: the command ends with exit code 0."""


class Parser(argparse.ArgumentParser):
    """argparse, with errors as :class:`UsageError` and ``--help`` as :class:`HelpShown`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if status == 0:  # after --help
            raise HelpShown
        raise UsageError(f"{self.prog}: {message or 'usage error'}")

    def _print_message(self, message: str, file=None) -> None:  # type: ignore[override]
        """Like argparse's, but a failed write to stdout is reported (argparse drops it)."""
        if not message:
            return
        if file is None or file is sys.stdout:
            from pybragg.cli.main import GuardedStdout

            GuardedStdout(sys.stdout).write(message)
        else:
            file.write(message)
