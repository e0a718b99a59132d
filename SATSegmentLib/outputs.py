"""Result files: a Slicer `.seg.nrrd` (via slicerio) and optional per-prompt NIfTI masks.

Every file is first written under a temporary name in its final folder and renamed into place only
when all outputs of a job are complete (`StagedOutputs`), so a failed or cancelled job leaves no
partial file and an existing file is replaced only when the caller allowed it.
"""

from __future__ import annotations

import datetime
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import InputError

SEG_SUFFIX = ".seg.nrrd"
# Used for segments without a terminology colour (free-text prompts): Slicer's first label colours.
_FALLBACK_COLORS = [(0.5, 0.68, 0.5), (0.95, 0.84, 0.57), (0.69, 0.48, 0.4), (0.85, 0.4, 0.37), (0.44, 0.72, 0.82)]


@dataclass
class SegmentSpec:
    """How one prompt appears in the segmentation: the mask key, its display name and metadata."""

    key: str                          # key of the mask (the SAT term the model was run with)
    name: str                         # segment name shown in Slicer
    prompt: str                       # what the user typed
    color: tuple[float, float, float] | None = None
    terminology: str | None = None    # Slicer terminology entry string
    tags: dict[str, str] = field(default_factory=dict)


def check_output_path(path: str | Path, overwrite: bool, suffix: str = SEG_SUFFIX) -> Path:
    """Validate an output file path before any compute: suffix, folder exists and is writable,
    no existing file unless `overwrite`."""
    path = Path(path).expanduser()
    if not path.name.lower().endswith(suffix):
        raise InputError(f"The output file {path} must end with {suffix}.", f"Use a name like {path.name.split('.')[0] or 'result'}{suffix}.")
    check_output_dir(path.parent)
    if path.is_dir():
        raise InputError(f"The output {path} is a folder.", f"Give a file name ending with {suffix}.")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; it was left untouched.", "Choose another output name, or add --overwrite to replace it.")
    return path


def check_output_dir(folder: str | Path, create: bool = False) -> Path:
    """The folder must exist (or be creatable when `create`) and be writable."""
    folder = Path(folder).expanduser()
    if not folder.exists() and create and folder.parent.is_dir():
        try:
            folder.mkdir()
        except OSError as exc:
            raise InputError(f"Cannot create the output folder {folder}: {exc.strerror}.", "Choose a folder you can write to.") from exc
    if not folder.is_dir():
        raise InputError(f"The output folder {folder} does not exist.", "Create it first, or choose an existing folder.")
    try:  # os.access is unreliable for network shares and ACLs: really try to create a file
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"Cannot write to the output folder {folder}: {exc.strerror}.", "Choose a folder you can write to.") from exc
    return folder


class StagedOutputs:
    """Collects files written under temporary names; `commit()` renames them all into place,
    `discard()` (or leaving the `with` block by an exception) deletes them."""

    def __init__(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []

    def temp_path(self, final: Path) -> Path:
        """A temporary path next to `final` with the same double suffix (so writers pick the format)."""
        suffix = "".join(final.suffixes[-2:]) if final.name.endswith((".nii.gz", SEG_SUFFIX)) else final.suffix
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial" + suffix, dir=final.parent)
        os.close(fd)
        temp = Path(name)
        self._pending.append((temp, final))
        return temp

    def commit(self) -> None:
        for temp, final in self._pending:
            if final.exists() and not self.overwrite:
                raise InputError(f"{final} appeared while the job ran; it was left untouched.", "Choose another output name, or use --overwrite.")
        for temp, final in self._pending:
            os.replace(temp, final)
        self._pending.clear()

    def discard(self) -> None:
        for temp, _ in self._pending:
            temp.unlink(missing_ok=True)
        self._pending.clear()

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()


def write_seg_nrrd(path: Path, masks: Mapping[str, np.ndarray], reference, specs: Sequence[SegmentSpec]) -> Path:
    """Write masks (SimpleITK order z, y, x, on `reference`'s grid) as a Slicer segmentation.

    Overlapping segments go to extra layers (a 4D `.seg.nrrd`, as Slicer stores them).
    """
    import slicerio
    from slicerio.segmentation import terminology_entry_from_string

    from .imageio import lps_affine_of

    shape = tuple(reversed(reference.GetSize()))
    segmentation = slicerio.create_segmentation(reference.GetSize(), lps_affine_of(reference))
    segmentation["containedRepresentationNames"] = ["Binary labelmap"]
    for index, spec in enumerate(specs):
        mask = np.asarray(masks[spec.key])
        if mask.shape != shape:
            raise ValueError(f"mask '{spec.key}' has shape {mask.shape}, the reference grid is {shape}")
        color = spec.color or _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)]
        segment = {"id": _segment_id(spec.name, index), "name": _header_safe(spec.name),
                   "color": [round(float(c), 6) for c in color], "status": "inprogress",
                   "tags": {key: _header_safe(value) for key, value in spec.tags.items()}}
        if spec.terminology:
            segment["terminology"] = terminology_entry_from_string(spec.terminology)
        slicerio.add_segment(segmentation, mask.transpose(2, 1, 0) > 0, segment)
    slicerio.write_segmentation(str(path), segmentation)
    return path


def write_nifti_mask(path: Path, mask: np.ndarray, reference) -> Path:
    """One uint8 mask (z, y, x) with the reference geometry."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def split_file_name(name: str) -> str:
    """File name for one segment's NIfTI: the name with anything but letters, digits, '-' and '_' as '_'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:120] + ".nii.gz"


def provenance_tags(prompt: str, term: str, model: str) -> dict[str, str]:
    """Extra segment tags recording where a segment came from."""
    return {
        "SATSegment.Prompt": prompt,
        "SATSegment.Term": term,
        "SATSegment.Model": model,
        "SATSegment.Date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _header_safe(text: str) -> str:
    """NRRD header lines and slicerio tags cannot hold newlines, '|' (tag separator) or '~'."""
    return re.sub(r"[\r\n|~]+", " ", str(text)).strip()


def _segment_id(name: str, index: int) -> str:
    return f"Segment_{index + 1}_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')[:60]}"


def segment_spec(prompt: str, term: str, model_label: str) -> SegmentSpec:
    """Segment name, colour, Slicer terminology and tags of a term (defaults for free text)."""
    from . import vocabulary
    from .errors import UnknownPromptError

    tags = provenance_tags(prompt, term, model_label)
    try:
        info = vocabulary.terminology_for(term)
    except UnknownPromptError:  # free-text prompt: no SNOMED entry, a default colour
        return SegmentSpec(term, term, prompt, tags=tags)
    return SegmentSpec(term, term, prompt, info.color_rgb, info.slicer_entry, tags)


def split_paths(split_dir: str | None, terms: Mapping[str, str], overwrite: bool) -> dict[str, Path]:
    """Prompt → NIfTI path in `split_dir` (unique names); refuses existing files unless `overwrite`."""
    if not split_dir:
        return {}
    folder, paths = Path(split_dir).expanduser(), {}
    for prompt, term in terms.items():
        name, n = split_file_name(term), 1
        while folder / name in paths.values():
            n += 1
            name = split_file_name(f"{term}_{n}")
        paths[prompt] = folder / name
        if paths[prompt].exists() and not overwrite:
            raise InputError(f"{paths[prompt]} already exists; it was left untouched.",
                             "Choose another --split-dir, or add --overwrite to replace it.")
    return paths


def write_job_outputs(output: Path, split: Mapping[str, Path], masks: Mapping[str, np.ndarray], reference,
                      specs: Sequence[SegmentSpec], overwrite: bool) -> dict:
    """Write a job's .seg.nrrd and split NIfTI files together (all or nothing); returns the `outputs` field."""
    with StagedOutputs(overwrite) as staged:
        write_seg_nrrd(staged.temp_path(output), masks, reference, specs)
        for spec in specs:
            if spec.prompt in split:
                write_nifti_mask(staged.temp_path(split[spec.prompt]), masks[spec.key], reference)
        staged.commit()
    return {"segmentation": str(output), "split": {prompt: str(path) for prompt, path in split.items()}}
