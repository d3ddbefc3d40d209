"""Entry point for ``python -m wryte_pipeline``."""

import sys

from wryte_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
