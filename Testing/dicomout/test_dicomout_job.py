"""`satsegment segment --dicom-seg/--rtstruct/--names` and the worker's `dicom_seg`/`rtstruct`/`names`: a real
job on the real CT series (tiny model, a small ROI), whose DICOM outputs must equal its NIfTI outputs, and
every refusal before any compute, with nothing written."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from SATSegmentLib.cli import main

# RAS mm box near the middle of the series (a few windows of the tiny model): masks are 0 outside it
ROI = ["-30", "160", "-800", "30", "220", "-770"]
PROMPTS = ["liver", "left parotid gland", "hepatic vessel"]  # 'hepatic vessel' -> 'liver vessel': no TG-263 name


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def job(ct_series, tiny_model_dir, tmp_path_factory, cli_job):
    """One CLI job writing a DICOM SEG, an RTSTRUCT and split NIfTI masks, TG-263 names, no .seg.nrrd."""
    out = tmp_path_factory.mktemp("job")
    code, events = cli_job(["segment", ct_series, *sum((["-p", p] for p in PROMPTS), []), "--model", tiny_model_dir,
                            "--roi", *ROI, "--dicom-seg", out / "ct.seg.dcm", "--rtstruct", out / "ct.rtstruct.dcm",
                            "--split-dir", out / "split", "--names", "tg263"])
    assert code == 0, events[-1]
    return out, events


def test_outputs_and_names_in_the_result(job):
    out, events = job
    result = next(e for e in events if e.get("event") == "result")
    assert result["outputs"]["dicom_seg"] == str(out / "ct.seg.dcm")
    assert result["outputs"]["rtstruct"] == str(out / "ct.rtstruct.dcm")
    assert result["outputs"]["segmentation"] is None and not list(out.glob("*.nrrd"))
    assert [s["name"] for s in result["segments"]] == ["Liver", "Parotid_L", "liver vessel"]
    warnings = [e["message"] for e in events if e.get("event") == "warning"]
    assert any("TG-263 has no name for 1 structure" in w and "'liver vessel'" in w for w in warnings)
    assert sorted(p.name for p in out.iterdir()) == ["ct.rtstruct.dcm", "ct.seg.dcm", "split"]  # no temporary left


def test_seg_equals_the_nifti_outputs_on_the_source_images(job, ct_series, independent):
    import highdicom as hd

    out, events = job
    model = next(e for e in events if e.get("event") == "result")["model"]
    seg = hd.seg.segread(out / "ct.seg.dcm")
    headers = independent.source_headers(ct_series)
    frames = {(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
               f.SegmentIdentificationSequence[0].ReferencedSegmentNumber): seg.pixel_array[i]
              for i, f in enumerate(seg.PerFrameFunctionalGroupsSequence)}
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Liver", "Parotid_L", "liver vessel"]
    identification = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert identification.AlgorithmName == model and len(identification.AlgorithmVersion) == 64
    nonzero = 0
    for number, term in enumerate(["liver", "left parotid gland", "liver vessel"], start=1):
        nifti = nib.load(str(out / "split" / f"{term.replace(' ', '_')}.nii.gz"))
        data = np.asarray(nifti.dataobj)
        for uid, header in headers.items():
            expected = independent.volume_on_image(nifti, header, data) > 0
            got = frames.get((uid, number), np.zeros_like(expected)) > 0
            assert np.array_equal(got, expected), (term, header.ImagePositionPatient)
            nonzero += int(expected.sum())
    assert nonzero > 1000  # the random tiny model does mark voxels inside the ROI


def test_rtstruct_rasterises_back_to_the_nifti_outputs(job, ct_series, independent):
    out, _ = job
    rt = pydicom.dcmread(out / "ct.rtstruct.dcm")
    headers = independent.source_headers(ct_series)
    assert [str(r.ROIName) for r in rt.StructureSetROISequence] == ["Liver", "Parotid_L", "liver vessel"]
    for roi, term in zip(rt.ROIContourSequence, ["liver", "left_parotid_gland", "liver_vessel"]):
        nifti = nib.load(str(out / "split" / f"{term}.nii.gz"))
        data = np.asarray(nifti.dataobj)
        contours: dict[str, list] = {uid: [] for uid in headers}
        for contour in roi.ContourSequence:
            uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            contours[uid].append(np.array([float(v) for v in contour.ContourData]).reshape(-1, 3))
        for uid, header in headers.items():
            assert np.array_equal(independent.rasterise(contours[uid], header),
                                  independent.volume_on_image(nifti, header, data) > 0), (term, header.ImagePositionPatient)


def test_a_nifti_input_is_refused_before_any_compute(ct_path, out_dir, tiny_model_dir, capsys):
    code, _, err = run(["segment", ct_path, "-p", "liver", "--modality", "ct", "--model", tiny_model_dir,
                        "--rtstruct", out_dir / "r.dcm"], capsys)
    assert code == 2 and "DICOM series" in err and "-o OUT.seg.nrrd" in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("module", ["highdicom", "skimage"])
def test_missing_dicom_libraries_are_named_with_the_extra_to_install(ct_series, out_dir, tiny_model_dir, capsys,
                                                                      monkeypatch, module):
    """pydicom, highdicom and scikit-image are the optional `dicom` extra: without them, say so before any compute."""
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == module else object())
    code, _, err = run(["segment", ct_series, "-p", "liver", "--modality", "ct", "--model", tiny_model_dir,
                        "--dicom-seg", out_dir / "s.dcm"], capsys)
    assert code == 2 and f"({module})" in err and 'SATSegmentLib[dicom]' in err
    assert list(out_dir.iterdir()) == []


def test_no_output_at_all_is_refused(ct_series, capsys):
    code, _, err = run(["segment", ct_series, "-p", "liver"], capsys)
    assert code == 2 and "No output" in err and "--dicom-seg" in err


def test_existing_files_and_clashing_paths_are_refused(ct_series, out_dir, tiny_model_dir, capsys):
    existing = out_dir / "old.dcm"
    existing.write_bytes(b"keep me")
    code, _, err = run(["segment", ct_series, "-p", "liver", "--model", tiny_model_dir, "--rtstruct", existing,
                        "--dicom-seg", out_dir / "new.dcm"], capsys)
    assert code == 2 and "exists" in err and existing.read_bytes() == b"keep me"
    code, _, err = run(["segment", ct_series, "-p", "liver", "--model", tiny_model_dir, "--rtstruct", out_dir / "a.dcm",
                        "--dicom-seg", out_dir / "a.dcm"], capsys)
    assert code == 2 and "two outputs" in err
    code, _, err = run(["segment", ct_series, "-p", "liver", "--model", tiny_model_dir, "--rtstruct", ct_series / "rt.dcm"],
                       capsys)
    assert code == 2 and "folder of the source series" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["old.dcm"]


def test_a_series_without_uids_is_refused_before_the_model_runs(examples_dir, out_dir, tiny_model_dir, capsys):
    code, _, err = run(["segment", examples_dir / "example_ct_dicom", "-p", "liver", "--model", tiny_model_dir,
                        "--dicom-seg", out_dir / "s.dcm", "-o", out_dir / "s.seg.nrrd"], capsys)
    assert code == 2 and "StudyInstanceUID" in err and "anonymised" in err
    assert list(out_dir.iterdir()) == []


def test_worker_requests_carry_the_dicom_outputs():
    from SATSegmentLib.errors import InputError
    from SATSegmentLib.server import BadRequestError, parse_segment_request

    request = parse_segment_request({"type": "segment", "id": "1", "input": "/ct", "prompts": ["liver"],
                                     "options": {"dicom_seg": "/o/s.dcm", "rtstruct": "/o/r.dcm", "names": "TG263"}})
    assert (request.output, request.dicom_seg, request.rtstruct, request.names) == (None, "/o/s.dcm", "/o/r.dcm", "tg263")
    with pytest.raises(BadRequestError, match="rtstruct"):
        parse_segment_request({"input": "/ct", "prompts": ["liver"], "options": {"rtstruct": 3}})
    with pytest.raises(BadRequestError, match="'output'"):  # no output of any kind
        parse_segment_request({"input": "/ct", "prompts": ["liver"], "options": {"names": "tg263"}})
    with pytest.raises(InputError, match="naming"):
        parse_segment_request({"input": "/ct", "prompts": ["liver"], "output": "/o/r.seg.nrrd", "options": {"names": "short"}})
