"""`python -m museforge ...` (used by `accelerate launch -m museforge train ...`)."""

import sys

from museforge.cli import main

sys.exit(main())
