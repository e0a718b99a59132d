"""One label image from per-prompt masks: what MONAI Label clients (Slicer's, OHIF) load as a result."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk


def write_labelmap(path: Path, masks: Sequence[str | Path]) -> tuple[Path, int]:
    """Write the mask files (same grid, prompt order) as one image with value n + 1 for mask n.

    A voxel in several masks keeps the first mask's value (SAT's masks may overlap; the .seg.nrrd
    output keeps every mask whole). Returns the path and the number of such overlapping voxels.
    """
    reference = sitk.ReadImage(str(masks[0]))
    labels = np.zeros(reference.GetSize()[::-1], np.uint8 if len(masks) < 256 else np.uint16)
    overlap = 0
    for value, mask_path in enumerate(masks, start=1):
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))) > 0
        taken = labels != 0
        overlap += int(np.count_nonzero(mask & taken))
        labels[mask & ~taken] = value
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), useCompression=True)
    return Path(path), overlap
