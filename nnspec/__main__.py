"""``python -m nnspec`` is the same as the ``nnspec`` command."""

import sys

from .cli import main

sys.exit(main())
