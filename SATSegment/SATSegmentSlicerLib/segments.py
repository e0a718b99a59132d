"""Put SAT results into a segmentation node without losing anything the user already has.

The worker writes a `.seg.nrrd` whose segments carry name, colour, standard terminology and
provenance tags (`SATSegment.Prompt`, `.Term`, `.Model`, `.Date`). Here each one becomes a segment of
the user's segmentation, with its own binary labelmap on the input volume's grid and a checksum tag
of that labelmap, so a later run can tell a segment the user edited from one it may replace.
Needs only Slicer's MRML layer (the `slicer-core` wheel is enough): no Qt.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .policies import ConflictPolicy

TAG_PROMPT = "SATSegment.Prompt"
TAG_TERM = "SATSegment.Term"
TAG_MODEL = "SATSegment.Model"
TAG_DATE = "SATSegment.Date"
TAG_CHECKSUM = "SATSegment.Checksum"  # labelmap checksum when the module created the segment
BINARY_LABELMAP = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


@dataclass
class ImportReport:
    """What `importResults` did, by segment name."""

    added: list[str] = field(default_factory=list)        # ids of the segments created from this result
    replaced: list[str] = field(default_factory=list)
    keptBoth: dict[str, str] = field(default_factory=dict)  # result name -> name given to the new segment
    skipped: list[str] = field(default_factory=list)
    # for undo: standalone copies of the segments REPLACE removed, and the segment order before the import
    previous: dict[str, slicer.vtkSegment] = field(default_factory=dict)
    orderBefore: list[str] = field(default_factory=list)


def undoImport(segmentationNode: slicer.vtkMRMLSegmentationNode, report: ImportReport) -> None:
    """Take an import back: remove the segments it added, put back the ones it replaced, where they were.

    Slicer's scene undo is off by default (and `SaveStateForUndo` then does nothing), so the module keeps
    the replaced segments itself, in the report.
    """
    segmentation = segmentationNode.GetSegmentation()
    wasModifying = segmentationNode.StartModify()
    try:
        for segmentId in report.added:
            if segmentation.GetSegment(segmentId) is not None:
                segmentation.RemoveSegment(segmentId)
        for segmentId, segment in report.previous.items():
            segmentation.AddSegment(segment, segmentId)
        present = [i for i in report.orderBefore if segmentation.GetSegment(i) is not None]
        for index, segmentId in enumerate(present):
            segmentation.SetSegmentIndex(segmentId, index)
    finally:
        segmentationNode.EndModify(wasModifying)


# -- labelmaps -------------------------------------------------------------------------------------


def _segmentMask(segment: slicer.vtkSegment) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """(mask z,y,x as bool, IJK of the array's first voxel, image-to-world 4x4) of one segment."""
    image = segment.GetRepresentation(BINARY_LABELMAP)
    matrix = vtk.vtkMatrix4x4()
    if image is None or image.IsEmpty() or image.GetPointData().GetScalars() is None:
        return np.zeros((0, 0, 0), bool), (0, 0, 0), np.eye(4)
    image.GetImageToWorldMatrix(matrix)
    extent = image.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])
    geometry = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    return values == segment.GetLabelValue(), (extent[0], extent[2], extent[4]), geometry


def segmentChecksum(segment: slicer.vtkSegment) -> str:
    """Hash of a segment's voxels in absolute grid coordinates.

    Independent of the label value, of the extent of a shared labelmap layer, and of other segments
    in that layer, so merging layers (as the Segment Editor does) does not count as an edit.
    """
    mask, start, geometry = _segmentMask(segment)
    digest = hashlib.sha256(np.round(geometry, 4).tobytes())
    if mask.any():
        nonzero = np.nonzero(mask)
        low = [int(axis.min()) for axis in nonzero]
        high = [int(axis.max()) + 1 for axis in nonzero]
        cropped = mask[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        digest.update(np.array([start[2] + low[0], start[1] + low[1], start[0] + low[2]], np.int64).tobytes())
        digest.update(np.array(cropped.shape, np.int64).tobytes())
        digest.update(np.packbits(cropped).tobytes())
    return digest.hexdigest()


def isUneditedModuleSegment(segment: slicer.vtkSegment) -> bool:
    """True for a segment this module created whose labelmap nobody changed since."""
    stored = vtk.reference("")
    return bool(segment.GetTag(TAG_CHECKSUM, stored)) and str(stored) == segmentChecksum(segment)


def _binarySegment(source: slicer.vtkSegment) -> slicer.vtkSegment:
    """A standalone copy of `source` with its own 0/1 labelmap (never a shared layer)."""
    mask, _, _ = _segmentMask(source)
    image = slicer.vtkOrientedImageData()
    image.DeepCopy(source.GetRepresentation(BINARY_LABELMAP))
    scalars = numpy_support.numpy_to_vtk(mask.astype(np.uint8).ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    segment = slicer.vtkSegment()
    segment.DeepCopyMetadata(source)
    segment.AddRepresentation(BINARY_LABELMAP, image)
    segment.SetLabelValue(1)
    return segment


def segmentVolumeMl(segment: slicer.vtkSegment) -> float:
    """Volume of a segment's binary labelmap in millilitres."""
    mask, _, geometry = _segmentMask(segment)
    return float(mask.sum()) * abs(float(np.linalg.det(geometry[:3, :3]))) / 1000.0


# -- reading results -------------------------------------------------------------------------------


def readSegmentationFile(path: str) -> slicer.vtkSegmentation:
    """Segments of a `.seg.nrrd` file, read by Slicer's own storage node into a scratch scene."""
    scratch = slicer.vtkMRMLScene()
    node = scratch.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scratch.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise OSError(f"Slicer could not read the segmentation file {path}")
    return node.GetSegmentation()


def _segmentIds(segmentation: slicer.vtkSegmentation) -> list[str]:
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def _segmentIdsNamed(segmentation: slicer.vtkSegmentation, name: str) -> list[str]:
    return [i for i in _segmentIds(segmentation) if segmentation.GetSegment(i).GetName() == name]


def _numberedName(segmentation: slicer.vtkSegmentation, name: str) -> str:
    number = 2
    while _segmentIdsNamed(segmentation, f"{name} ({number})"):
        number += 1
    return f"{name} ({number})"


def _numbered(name: str) -> re.Pattern:
    """`name` or `name (n)`: the names a structure's segment gets in one segmentation."""
    return re.compile(re.escape(name) + r"( \(\d+\))?")


def _term(segment: slicer.vtkSegment) -> str:
    """The SAT term the module tagged the segment with ('' for a segment it did not make)."""
    term = vtk.reference("")
    return str(term) if segment.GetTag(TAG_TERM, term) else ""


def _replaceableCopies(segmentation: slicer.vtkSegmentation, name: str, term: str) -> list[str]:
    """Unedited segments this module made for the structure before: named `name` (or `name (n)`), or tagged with
    its SAT term `term` and named as another naming choice names it (made before the user switched naming)."""
    from SATSegmentLib.vocabulary.tg263 import NAME_SCHEMES, structure_name

    otherNames = [_numbered(structure_name(term, scheme)) for scheme in NAME_SCHEMES] if term else []

    def sameStructure(segment: slicer.vtkSegment) -> bool:
        segmentName = segment.GetName()
        return bool(_numbered(name).fullmatch(segmentName)
                    or (_term(segment) == term and any(other.fullmatch(segmentName) for other in otherNames)))

    return [i for i in _segmentIds(segmentation)
            if sameStructure(segmentation.GetSegment(i)) and isUneditedModuleSegment(segmentation.GetSegment(i))]


def _decide(policy: ConflictPolicy, segmentation: slicer.vtkSegmentation, name: str,
            term: str) -> tuple[ConflictPolicy, list[str]]:
    """The action for a new segment called `name` (for SAT term `term`), and the segments it replaces.

    AUTO replaces this module's unedited earlier results for that structure, under either naming choice (so
    re-runs do not pile up copies) and otherwise keeps both; the explicit policies act on the segments of
    exactly that name.
    """
    sameName = _segmentIdsNamed(segmentation, name)
    if policy is ConflictPolicy.AUTO:
        replaceable = _replaceableCopies(segmentation, name, term)
        if replaceable:
            return ConflictPolicy.REPLACE, replaceable
        return ConflictPolicy.KEEP_BOTH, sameName
    if not sameName:
        return ConflictPolicy.KEEP_BOTH, []
    return policy, sameName


def importResults(
    segmentationNode: slicer.vtkMRMLSegmentationNode,
    segNrrdPath: str,
    policy: ConflictPolicy = ConflictPolicy.AUTO,
    names: str = "sat",
) -> ImportReport:
    """Add the segments of the worker's `.seg.nrrd` to `segmentationNode` following `policy`, named by `names`.

    Existing segments are removed only under REPLACE, or under AUTO when they are this module's earlier,
    unedited results for the same structure; the report keeps copies of them for `undoImport`. `names`
    ('sat' or 'tg263') names each segment from its SAT term tag, the same for local and server results.
    """
    source = readSegmentationFile(segNrrdPath)
    target = segmentationNode.GetSegmentation()
    report = ImportReport(orderBefore=_segmentIds(target))
    wasModifying = segmentationNode.StartModify()
    try:
        for index in range(source.GetNumberOfSegments()):
            segment = _binarySegment(source.GetNthSegment(index))
            segment.SetTag(TAG_CHECKSUM, segmentChecksum(segment))
            segment.SetName(structureName(segment, names))
            name = segment.GetName()
            action, existing = _decide(ConflictPolicy(policy), target, name, _term(segment))
            if action is ConflictPolicy.SKIP:
                report.skipped.append(name)
                continue
            if action is ConflictPolicy.REPLACE:
                segmentId = existing[0]
                if _numbered(name).fullmatch(target.GetSegment(segmentId).GetName()):  # keeps its number
                    segment.SetName(target.GetSegment(segmentId).GetName())  # (the other naming choice's: the new name)
                position = target.GetSegmentIndex(segmentId)
                for oldId in existing:
                    if oldId in report.orderBefore and oldId not in report.previous:  # there before this import
                        report.previous[oldId] = _binarySegment(target.GetSegment(oldId))
                    target.RemoveSegment(oldId)
                insertBefore = target.GetNthSegmentID(position) if position < target.GetNumberOfSegments() else ""
                target.AddSegment(segment, segmentId, insertBefore)
                report.replaced.append(segment.GetName())
            else:
                if existing:
                    segment.SetName(_numberedName(target, name))
                    report.keptBoth[name] = segment.GetName()
                segmentId = target.GenerateUniqueSegmentID(name)
                target.AddSegment(segment, segmentId)
            report.added.append(segmentId)
    finally:
        segmentationNode.EndModify(wasModifying)
    return report


def structureName(segment: slicer.vtkSegment, names: str) -> str:
    """The name a result segment gets under the naming choice: its TG-263 name ('tg263', when TG-263 has
    one) or SAT's term, from the segment's term tag (its own name when it has no tag)."""
    from SATSegmentLib.vocabulary.tg263 import structure_name

    term = _term(segment)
    return structure_name(term, names) if term else segment.GetName()


def loadTerminologyContexts(terminologiesLogic: slicer.vtkSlicerTerminologiesModuleLogic, folder: Path) -> list[str]:
    """Load the module's terminology contexts (`*.term.json`), so Slicer shows the segments' SNOMED terms.

    Returns the names of the contexts that are loaded afterwards.
    """
    names = []
    for path in sorted(Path(folder).glob("*.term.json")):
        name = terminologiesLogic.LoadTerminologyFromFile(str(path))
        if not name:
            raise OSError(f"Slicer could not load the terminology file {path}")
        names.append(name)
    return names


# -- output node -----------------------------------------------------------------------------------


def createOutputSegmentation(volumeNode: slicer.vtkMRMLScalarVolumeNode, name: str | None = None) -> slicer.vtkMRMLSegmentationNode:
    """A new segmentation on the volume's grid, under the volume's transform and in its study."""
    scene = volumeNode.GetScene()
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volumeNode.GetName()} SAT")
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    placeInSameStudy(segmentationNode, volumeNode)
    return segmentationNode


def placeInSameStudy(node: slicer.vtkMRMLNode, reference: slicer.vtkMRMLNode) -> None:
    """Put `node` next to `reference` in the subject hierarchy (same parent item: study or folder)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(reference.GetScene())
    if hierarchy is None:
        return
    referenceItem = hierarchy.GetItemByDataNode(reference)
    if not referenceItem:
        return
    parent = hierarchy.GetItemParent(referenceItem)
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)
