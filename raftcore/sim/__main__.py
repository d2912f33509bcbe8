"""``python -m raftcore.sim``; see ``raftcore.sim.cli``."""

from __future__ import annotations

import sys

from raftcore.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
