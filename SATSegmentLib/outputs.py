"""Result files: a Slicer `.seg.nrrd` (via slicerio) and optional per-prompt NIfTI masks.

Every file is first written under a temporary name in its final folder and renamed into place only
when all outputs of a job are complete (`StagedOutputs`), so a failed or cancelled job leaves no
partial file (nor a folder it created) and an existing file is replaced only when the caller allowed
it, and never when it is the input scan. Files get the permissions a plain `open()` gives under the
umask, so colleagues (or Slicer run by another user) can read them. Segment names and tags keep any
Unicode text: the `.seg.nrrd` header holds it as UTF-8, as Slicer itself writes and reads it.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import re
import secrets
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputError
from .userdirs import DISK_FULL

SEG_SUFFIX = ".seg.nrrd"
SPLIT_SUFFIX = ".nii.gz"
TEMP_MARKER = ".partial"  # temporary names: .<final name>.<8 characters>.partial<final suffixes>
# A job writes its temporary files in its last seconds and renames them at once: one untouched for an
# hour belongs to a run that was killed (SIGKILL, power loss) and is removed by the next run.
STALE_TEMP_SECONDS = 3600
MAX_SPLIT_STEM_BYTES = 120  # file names are limited to 255 bytes; a CJK character takes 3 in UTF-8
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


def check_output_path(path: str | Path, overwrite: bool, suffix: str = SEG_SUFFIX,
                      protect: Iterable[str | Path] = ()) -> Path:
    """Validate an output file path before any compute: suffix, folder exists and is writable, not one
    of the `protect`ed files (the input scan: also through symlinks or another spelling), no existing
    file unless `overwrite`."""
    path = Path(path).expanduser()
    if not path.name.lower().endswith(suffix):
        raise InputError(f"The output file {path} must end with {suffix}.", f"Use a name like {path.name.split('.')[0] or 'result'}{suffix}.")
    check_output_dir(path.parent)
    if path.is_dir():
        raise InputError(f"The output {path} is a folder.", f"Give a file name ending with {suffix}.")
    _check_replaceable(path, overwrite, protect, "Choose another output name, or add --overwrite to replace it.")
    return path


def check_output_dir(folder: str | Path, create: bool = False) -> Path:
    """The folder must exist and be writable; with `create` it may also be missing, when its parent is
    a writable folder: `StagedOutputs` creates it when the outputs are written, so a run that fails
    before leaves no empty folder behind."""
    folder = Path(folder).expanduser()
    _check_writable_dir(folder.parent if create and not folder.exists() else folder)
    return folder


def _check_writable_dir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"The output folder {folder} is a file, not a folder.", "Choose a folder, or a new folder name.")
    if not folder.is_dir():
        raise InputError(f"The output folder {folder} does not exist.", "Create it first, or choose an existing folder.")
    try:  # os.access is unreliable for network shares and ACLs: really try to create a file
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"Cannot write to the output folder {folder}: {exc.strerror}.", "Choose a folder you can write to.") from exc


def _check_replaceable(path: Path, overwrite: bool, protect: Iterable[str | Path], hint: str) -> None:
    """An existing `path` may be replaced only with `overwrite`, and never when it is a protected file."""
    if not path.exists():
        return
    for kept in protect:
        if _same_file(path, kept):
            raise InputError(f"The output {path} is the input {kept}; writing it would replace the scan.",
                             "Choose another output name or folder.")
    if not overwrite:
        raise InputError(f"{path} already exists; it was left untouched.", hint)


def _same_file(path: Path, other: str | Path) -> bool:
    """Whether both name one file (symlinks, hard links, `..` and case-insensitive spellings included)."""
    try:
        return os.path.samefile(path, Path(other).expanduser())
    except OSError:  # `other` does not exist (any more): it cannot be overwritten
        return False


class StagedOutputs:
    """Collects files written under temporary names; `commit()` renames them all into place,
    `discard()` (or leaving the `with` block by an exception) deletes them, and the folders it created."""

    def __init__(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []
        self._created: list[Path] = []

    def temp_path(self, final: Path) -> Path:
        """A new empty file next to `final` (its folder is created if missing) with the same double
        suffix, so writers pick the format. Stale temporary files of `final` are removed first."""
        self._make_folder(final.parent)
        remove_stale_temp_files(final)
        temp = _create_temp_file(final)
        self._pending.append((temp, final))
        return temp

    def commit(self) -> None:
        for _, final in self._pending:
            if final.exists() and not self.overwrite:
                raise InputError(f"{final} appeared while the job ran; it was left untouched.", "Choose another output name, or use --overwrite.")
        for temp, final in self._pending:
            with _writing(final):
                os.replace(temp, final)
        self._pending.clear()
        self._created.clear()

    def discard(self) -> None:
        for temp, _ in self._pending:
            temp.unlink(missing_ok=True)
        self._pending.clear()
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):  # not empty: someone else put files there meanwhile
                folder.rmdir()
        self._created.clear()

    def _make_folder(self, folder: Path) -> None:
        try:
            folder.mkdir()
        except FileExistsError:
            return
        self._created.append(folder)

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()


def _output_suffix(final: Path) -> str:
    return "".join(final.suffixes[-2:]) if final.name.endswith((SPLIT_SUFFIX, SEG_SUFFIX)) else final.suffix


def _create_temp_file(final: Path) -> Path:
    """Create `.<name>.<8 hex digits>.partial<suffix>` next to `final` with mode 0o666: the umask then
    gives it the permissions of a plain `open()` (tempfile.mkstemp would make it private, 0o600)."""
    while True:
        temp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_MARKER}{_output_suffix(final)}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp


def remove_stale_temp_files(final: Path, max_age: float = STALE_TEMP_SECONDS) -> None:
    """Delete temporary files of `final` left by a killed run: only our names (8 random characters,
    hex now, tempfile's in earlier versions), and only when untouched for `max_age` seconds, so a
    concurrent run's files are kept."""
    ours = re.compile(rf"\.{re.escape(final.name)}\.[a-z0-9_]{{8}}{re.escape(TEMP_MARKER + _output_suffix(final))}")
    cutoff = time.time() - max_age
    with os.scandir(final.parent) as entries:
        for entry in entries:
            if ours.fullmatch(entry.name) and entry.is_file(follow_symlinks=False) \
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                with contextlib.suppress(OSError):  # another user's file, or gone meanwhile
                    os.unlink(entry.path)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` into the error a user can act on (a full disk above all)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise InputError(f"Not enough space to write {path}: {exc.strerror}.",
                             "Free some disk space, or choose an output folder on a disk with more space.") from exc
        raise InputError(f"Cannot write {path}: {exc.strerror or exc}.", "Check the output folder, or choose another one.") from exc


def write_seg_nrrd(path: Path, masks: Mapping[str, np.ndarray], reference, specs: Sequence[SegmentSpec]) -> Path:
    """Write masks (SimpleITK order z, y, x, on `reference`'s grid) as a Slicer segmentation.

    Overlapping segments go to extra layers (a 4D `.seg.nrrd`, as Slicer stores them). Segment names
    and tags may hold any Unicode text (free-text prompts, a model folder's path): pynrrd writes
    ASCII headers only, so they go through it escaped and reach the file as UTF-8 (`_Utf8Header`).
    """
    import slicerio

    from .imageio import lps_affine_of

    shape = tuple(reversed(reference.GetSize()))
    segmentation = slicerio.create_segmentation(reference.GetSize(), lps_affine_of(reference))
    segmentation["containedRepresentationNames"] = ["Binary labelmap"]
    for index, spec in enumerate(specs):
        mask = np.asarray(masks[spec.key])
        if mask.shape != shape:
            raise ValueError(f"mask '{spec.key}' has shape {mask.shape}, the reference grid is {shape}")
        color = spec.color or _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)]
        tags = {key: _escape(_header_safe(value)) for key, value in spec.tags.items()}
        if spec.terminology:  # Slicer's tag for it, escaped like the others (slicerio's dict form would not be)
            tags["TerminologyEntry"] = _escape(spec.terminology)
        segment = {"id": _segment_id(spec.name, index), "name": _escape(_header_safe(spec.name)),
                   "color": [round(float(c), 6) for c in color], "status": "inprogress", "tags": tags}
        slicerio.add_segment(segmentation, mask.transpose(2, 1, 0) > 0, segment)
    with open(path, "wb") as file:
        slicerio.write_segmentation(_Utf8Header(file), segmentation)
    return path


def _escape(text: str) -> str:
    """`text` in ASCII for pynrrd: backslashes and non-ASCII characters as Python escapes (undone by `_Utf8Header`)."""
    return text.encode("unicode_escape").decode("ascii")


class _Utf8Header(io.RawIOBase):
    """Binary stream for pynrrd that writes the segment names and tags of the header (`_escape`d) as
    Slicer writes them, and reads them back: UTF-8, with backslashes and newlines escaped as the
    NRRD format asks for key/value pairs. The voxel data passes through.

    The header is held back until its end, the first blank line (NRRD headers have no other).
    """

    _ESCAPED = re.compile(rb"^(Segment\d+_(?:Name|Tags):=)(.*)$", re.MULTILINE)

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__()
        self._file = file
        self._header: bytearray | None = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if self._header is None:
            return self._file.write(data)
        self._header += data
        end = self._header.find(b"\n\n")
        if end >= 0:
            header, rest = bytes(self._header[:end + 2]), bytes(self._header[end + 2:])
            self._header = None
            self._file.write(self._ESCAPED.sub(self._utf8, header))
            self._file.write(rest)
        return len(data)

    @staticmethod
    def _utf8(line: re.Match) -> bytes:
        text = line[2].decode("unicode_escape").replace("\\", "\\\\").replace("\n", "\\n")
        return line[1] + text.encode("utf-8", "backslashreplace")


def write_nifti_mask(path: Path, mask: np.ndarray, reference) -> Path:
    """One uint8 mask (z, y, x) with the reference geometry.

    Written with nibabel: ITK's NIfTI writer reports a full disk only on stderr and leaves a
    truncated file, which would be renamed into place as if complete.
    """
    import nibabel

    from .imageio import LPS_TO_RAS, lps_affine_of

    affine = LPS_TO_RAS @ lps_affine_of(reference)  # NIfTI maps voxels to RAS
    image = nibabel.Nifti1Image(np.asarray(mask, dtype=np.uint8).transpose(2, 1, 0), affine)
    image.set_qform(affine, code=1)  # scanner coordinates, in both forms, as ITK writes them
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, str(path))
    return path


def split_file_name(name: str, number: int = 1) -> str:
    """File name for one segment's NIfTI: `name` with runs of anything but letters (of any script),
    digits, '-' and '_' as '_', at most MAX_SPLIT_STEM_BYTES bytes of UTF-8, 'segment' if nothing is
    left (e.g. '.'); from `number` 2 on, `_<number>` is added to tell equal names apart."""
    stem = re.sub(r"[^\w-]+", "_", unicodedata.normalize("NFC", name)).strip("_-")
    stem = stem.encode()[:MAX_SPLIT_STEM_BYTES].decode(errors="ignore") or "segment"
    return f"{stem}{f'_{number}' if number > 1 else ''}{SPLIT_SUFFIX}"


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


def split_paths(split_dir: str | None, terms: Mapping[str, str], overwrite: bool,
                protect: Iterable[str | Path] = ()) -> dict[str, Path]:
    """Prompt → NIfTI path in `split_dir` (names unique, also on case-insensitive disks); refuses
    existing files unless `overwrite`, and the `protect`ed ones (the input scan) always."""
    if not split_dir:
        return {}
    folder, paths, taken = Path(split_dir).expanduser(), {}, set()
    for prompt, term in terms.items():
        number = 1
        while (name := split_file_name(term, number)).casefold() in taken:
            number += 1
        taken.add(name.casefold())
        paths[prompt] = folder / name
        _check_replaceable(paths[prompt], overwrite, protect, "Choose another --split-dir, or add --overwrite to replace it.")
    return paths


def write_job_outputs(output: Path | None, split: Mapping[str, Path], masks: Mapping[str, np.ndarray], reference,
                      specs: Sequence[SegmentSpec], overwrite: bool,
                      extra: Sequence[tuple[str, Path, Callable[[Path], object]]] = ()) -> dict:
    """Write a job's .seg.nrrd (unless `output` is None), split NIfTI files and `extra` files (result key, final
    path, writer of a temporary path: the DICOM outputs) together, all or nothing; returns the `outputs` field."""
    with StagedOutputs(overwrite) as staged:
        if output is not None:
            with _writing(output):
                write_seg_nrrd(staged.temp_path(output), masks, reference, specs)
        for spec in specs:
            if spec.prompt in split:
                with _writing(split[spec.prompt]):
                    write_nifti_mask(staged.temp_path(split[spec.prompt]), masks[spec.key], reference)
        for _, path, write in extra:
            with _writing(path):
                write(staged.temp_path(path))
        staged.commit()
    return {"segmentation": None if output is None else str(output),
            "split": {prompt: str(path) for prompt, path in split.items()},
            **{key: str(path) for key, path, _ in extra}}
