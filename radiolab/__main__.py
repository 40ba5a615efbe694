import sys

from radiolab.cli import main

sys.exit(main())
