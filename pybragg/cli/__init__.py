"""The ``pybragg`` command: ``main`` (render), ``tools`` (``compare``, ``trace``), ``help``.

The flag language itself (table, parser, input loading) is :mod:`pybragg.flags`, the writers
of the output files :mod:`pybragg.writers`; this package only runs them and prints.
:mod:`pybragg.cli.help` renders the flag table as help text and as Markdown.
"""
