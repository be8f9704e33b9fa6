"""``python -m dyce`` runs the command line."""

import sys

from dyce.cli import main

sys.exit(main())
