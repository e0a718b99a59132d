"""Qt-free helpers of the SATSegment Slicer module.

Everything here runs without the Slicer application (with the `slicer-core` wheel), so the module's
MRML work and its worker driving are tested in CI. `SATSegment.py` adds the widgets on top.
"""
