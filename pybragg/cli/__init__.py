"""The ``pybragg`` command line: flag table, parser and help text.

:mod:`pybragg.cli.flags` holds the one table of every flag,
:mod:`pybragg.cli.parse` turns an argument list into an :class:`~pybragg.cli.parse.Invocation`
and :mod:`pybragg.cli.help` renders the table as help text and as Markdown.
"""
