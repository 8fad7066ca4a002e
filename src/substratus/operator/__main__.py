"""`python -m substratus.operator` (also `sub operator`): run the operator."""

import sys

from substratus.operator.app import main

sys.exit(main())
