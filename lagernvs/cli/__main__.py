"""``python -m lagernvs.cli``: the `lagernvs` command."""

import sys

from lagernvs.cli import main

sys.exit(main())
