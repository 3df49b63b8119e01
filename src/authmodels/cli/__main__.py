"""``python -m authmodels.cli``: the ``authmodels`` command, where the console script is not on
the PATH."""

import sys

from authmodels.cli import main

sys.exit(main())
