"""`python -m helmdeck_operator` is the `helmdeck-operator` command."""

import sys

from helmdeck_operator.cli import main

sys.exit(main())
