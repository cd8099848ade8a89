import sys

from refconv.cli import main

sys.exit(main())
