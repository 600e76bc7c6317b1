"""``python -m unet_core.cli``: same as the ``napari-unet`` console script."""

import sys

from . import main

sys.exit(main())
