"""``python -m lagernvs.viewer ...``: the same as ``lagernvs view ...``."""

import sys

from lagernvs.viewer.cli import main

sys.exit(main())
