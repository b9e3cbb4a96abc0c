"""``python -m ppRestore <command> ...``: the same as the ``pprestore`` command."""

import sys

from .commands import main

sys.exit(main())
