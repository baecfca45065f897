"""`python -m fastlenet ...`: the same command line as the `fastlenet` console script."""
import sys

from fastlenet.cli import main

sys.exit(main())
