"""``python -m taskloom`` is the ``taskloom`` command."""

import sys

from taskloom.cli.main import main

sys.exit(main())
