import sys

from wrapkit.cli import main

sys.exit(main())
