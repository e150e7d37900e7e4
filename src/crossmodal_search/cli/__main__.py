import sys

from crossmodal_search.cli import main

sys.exit(main())
