"""SATSegmentLib: text-prompted 3D segmentation with SAT, mapped back onto the input scan.

Heavy dependencies (torch, transformers) are imported lazily so that the vocabulary and the
command-line help stay fast and usable without them.
"""

__version__ = "0.1.0"
