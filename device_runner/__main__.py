"""``python -m device_runner JOB_DIR``: the same as ``python -m device_runner.run JOB_DIR``."""

import sys

from device_runner.run import main

sys.exit(main())
