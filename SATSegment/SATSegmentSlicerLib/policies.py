"""What to do when a result has the name of a segment the segmentation already holds."""

import enum


class ConflictPolicy(str, enum.Enum):
    AUTO = "auto"          # replace this module's own unedited earlier results; otherwise keep both
    REPLACE = "replace"    # replace the existing segment(s) of that name
    KEEP_BOTH = "keep"     # add the new segment under a numbered name
    SKIP = "skip"          # leave the existing segment, do not add the new one
