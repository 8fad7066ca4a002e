"""`python -m substratus.kube` (also `sub operator`): run the operator."""

import sys

from substratus.kube.app import main

sys.exit(main())
