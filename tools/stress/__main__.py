"""``python -m tools.stress`` = ``hsd stress``."""
import sys

from tools.stress.cli import main

sys.exit(main())
