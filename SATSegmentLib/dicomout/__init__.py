"""DICOM outputs for PACS and radiotherapy: DICOM SEG (highdicom) and RTSTRUCT (pydicom), written against the
DICOM series the scan came from (same patient, study and Frame of Reference; new UIDs).

```python
from SATSegmentLib.dicomout import read_source_series, write_dicom_seg, write_rtstruct

source = read_source_series("ct_dicom/")            # headers only, checked for what SEG/RTSTRUCT need
write_rtstruct("ct.rtstruct.dcm", result, source, names="tg263")
write_dicom_seg("ct.seg.dcm", result, source)
```

Modules: `source` (the series' headers, slice order by ImagePositionPatient, grid mapping), `structures`
(names, codes, colours, algorithm), `seg`, `rtstruct` with `contours` and `roitypes`, `api` (writing, job glue).
Details and the reasons for the libraries: docs/dicom-outputs.md.
"""

from .api import DicomTargets, check_dicom_targets, dicom_writers, structures_for, write_dicom_seg, write_rtstruct
from .source import SourceSeries, read_source_series
from .structures import Algorithm, Structure

__all__ = ["Algorithm", "DicomTargets", "SourceSeries", "Structure", "check_dicom_targets", "dicom_writers",
           "read_source_series", "structures_for", "write_dicom_seg", "write_rtstruct"]
