"""``python -m console`` is the same program as ``claude-console``."""

import sys

from .cli import main

sys.exit(main())
