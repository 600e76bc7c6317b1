"""napari-unet: U-Net segmentation for microscopy as a napari plugin.

Kept light on purpose: napari imports this package when it reads the manifest at start-up,
so nothing heavy (torch, napari, Qt) is imported here. The engine lives in ``unet_core``.
"""

__version__ = "0.1.0"
