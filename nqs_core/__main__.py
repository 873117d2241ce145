"""``python -m nqs_core …`` is the ``nqs`` command."""

import sys

from nqs_core.cli import main

sys.exit(main())
