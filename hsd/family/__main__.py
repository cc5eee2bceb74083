import sys

from hsd.family.train import main

sys.exit(main())
