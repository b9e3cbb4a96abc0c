"""A small window to restore one image: ``python tools/gui.py [-c CONFIG --model_path W | --model_dir EXPORTED]``.

Open an image, pick a config + weights or an exported model, Restore, Save output.
Needs Tk (``python3-tk`` on Debian/Ubuntu) and a display. See docs/gui.md.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    try:
        from ppRestore.gui.app import main as gui_main
    except ImportError as e:  # no tkinter in this Python
        print(f"error: the GUI needs Tk ({e}); install python3-tk", file=sys.stderr)
        return 1
    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
