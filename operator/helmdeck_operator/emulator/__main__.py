"""`python -m helmdeck_operator.emulator`: the emulator CLI without the operator's CLI.

The subprocess runner uses this entry point so it depends on nothing but this package.
"""

import sys

from helmdeck_operator.emulator.cli import main

__all__: list[str] = []

sys.exit(main())
