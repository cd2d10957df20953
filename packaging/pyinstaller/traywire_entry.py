"""The PyInstaller entry point of the macOS and Windows builds: the ``traywire``
command (``traywire.cli:main``), tray app by default, ``serve`` and the rest as
subcommands."""

from __future__ import annotations

import sys

from traywire.cli import main

if __name__ == "__main__":
    sys.exit(main())
