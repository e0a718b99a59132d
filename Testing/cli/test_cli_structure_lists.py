"""Structure lists: --prompts-file and pasted text as plain lists, separated lists and planning-system CSV exports."""

from __future__ import annotations

import pytest

from SATSegmentLib.cli import main
from SATSegmentLib.errors import UnknownPromptError
from SATSegmentLib.prompts import read_structure_list, resolve_entries

HEAD_AND_NECK = ["Parotid_L", "Parotid_R", "SpinalCord", "Brainstem", "Bone_Mandible"]


def test_semicolon_separated_tg263_names():
    assert read_structure_list("Parotid_L; Parotid_R; SpinalCord; Brainstem; Bone_Mandible") == HEAD_AND_NECK


def test_comma_separated_names_over_several_lines():
    assert read_structure_list("liver, spleen\nleft kidney,\n") == ["liver", "spleen", "left kidney"]


def test_one_name_per_line_with_comments_and_blank_lines():
    assert read_structure_list("# organs\n\n  left   kidney  # the left one\nspleen\n") == ["left kidney", "spleen"]


@pytest.mark.parametrize("header, rows", [
    ("Structure,Type,Color", ["Parotid_L,ORGAN,255 0 0", "SpinalCord,ORGAN,0 255 0"]),       # Eclipse-like template
    ("ROI Name;ROI Type", ["Parotid_L;Organ", "SpinalCord;Organ"]),                           # RayStation, European Excel
    ('"#","Name","Volume"', ['1,"Parotid_L",12.5', '2,"SpinalCord",30.1']),                   # quoted cells
    ("Id\tTG263-Primary Name\tDescription", ["1\tParotid_L\tParotid Left", "2\tSpinalCord\tSpinal Cord"]),  # AAPM table
])
def test_csv_exports_use_their_structure_column(header, rows):
    assert read_structure_list("\n".join([header, *rows]) + "\n") == ["Parotid_L", "SpinalCord"]


def test_a_structure_column_wins_over_a_name_column():
    assert read_structure_list("Name,Structure\nPatient A,Liver\n") == ["Liver"]


def test_utf16_file_with_byte_order_mark(tmp_path):
    path = tmp_path / "template.txt"
    path.write_text("Structure\tType\r\nParotid_L\tORGAN\r\n", encoding="utf-16")  # Excel's "Unicode text"
    assert read_structure_list(path) == ["Parotid_L"]


def test_tg263_and_plain_english_entries_resolve_to_sat_terms():
    resolution = resolve_entries(HEAD_AND_NECK + ["left kidney"], "ct")
    assert resolution.unresolved == {}
    assert list(resolution.terms.values()) == ["left parotid gland", "right parotid gland", "spinal cord", "brainstem",
                                               "mandible", "left kidney"]


def test_every_unresolved_entry_is_named_with_suggestions():
    resolution = resolve_entries(["Parotid_L", "Parotd_Lx", "SpinalCord", "Kidny_Lft"], "ct")
    with pytest.raises(UnknownPromptError) as raised:
        resolution.raise_unresolved()
    assert sorted(resolution.unresolved) == ["Kidny_Lft", "Parotd_Lx"]
    assert "2 entries" in raised.value.message and "Parotd_Lx" in raised.value.message and "Kidny_Lft" in raised.value.message
    assert all(error.suggestions for error in resolution.unresolved.values())


def test_cli_refuses_a_list_with_unknown_entries_before_any_compute(ct_path, out_dir, tmp_path, capsys):
    prompts = tmp_path / "template.csv"
    prompts.write_text("Structure,Type\nParotid_L,ORGAN\nfoo_bar_organ,ORGAN\nbaz organ,ORGAN\n")
    code = main(["segment", str(ct_path), "--prompts-file", str(prompts), "-o", str(out_dir / "r.seg.nrrd"),
                 "--modality", "ct", "--model", str(tmp_path / "no-model-needed")])
    err = capsys.readouterr().err
    assert code == UnknownPromptError.exit_code, err
    assert "foo_bar_organ" in err and "baz organ" in err
    assert list(out_dir.iterdir()) == []
