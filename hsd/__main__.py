import sys

from hsd.tools.cli import main

sys.exit(main())
