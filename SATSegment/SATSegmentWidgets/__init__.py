"""The parts of SATSegment's panel (setup, compute, prompt entry, run, results): Qt widgets on the logic of
`SATSegmentSlicerLib`, put together by `SATSegmentWidget` in SATSegment.py."""
