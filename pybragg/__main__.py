"""``python -m pybragg``: the ``pybragg`` command."""

from pybragg.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
