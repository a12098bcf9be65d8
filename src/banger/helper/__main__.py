"""``python -m banger.helper``, for when the console script is not on PATH."""

import sys

from banger.helper.main import main

sys.exit(main())
