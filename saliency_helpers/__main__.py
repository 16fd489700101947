"""``python -m saliency_helpers COMMAND``: the same as ``saliency-course COMMAND``."""

import sys

from .course.cli import main

if __name__ == "__main__":
    sys.exit(main())
