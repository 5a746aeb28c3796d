import sys

from zones.cli import main

sys.exit(main())
