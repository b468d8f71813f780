"""``python -m clusters.local.images.dns``: see ``server.parse_args`` for the flags."""

import sys

from .server import main

sys.exit(main())
