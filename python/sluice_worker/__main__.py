"""``python -m sluice_worker --socket PATH --entry-script SCRIPT [--app-root DIR]``."""

import sys

from sluice_worker.worker import main

if __name__ == "__main__":
    sys.exit(main())
