"""``python -m ttasr`` (e.g. ``torchrun -m ttasr bench ...``): the command line."""

import sys

from .cli import main

sys.exit(main())
