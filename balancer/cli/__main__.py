"""`python -m balancer.cli`: the `pve-balancer` command without its console script."""

import sys

from balancer.cli import main

sys.exit(main())
