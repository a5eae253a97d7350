"""``python -m tmepde.config > docs/config.md``: print the generated config reference."""

import sys

from .docs import config_reference

sys.stdout.write(config_reference())
