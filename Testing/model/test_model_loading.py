"""Official-layout checkpoints load strictly; every wrong file gets a clear ModelError."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from SATSegmentLib.errors import DeviceError, ModelError
from SATSegmentLib.model import (SATConfig, detect_variant, load_model_folder, load_official_checkpoints,
                                 precompute_embeddings, resolve_device)
from SATSegmentLib.model import checkpoint as ckpt
from SATSegmentLib.model.sat import SATModel
from SATSegmentLib.model.testing import random_models, write_official_checkpoints


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path) -> Path:
    """A private, writable copy of the shared tiny model folder, without the caches other tests filled."""
    caches = shutil.ignore_patterns("text_embeddings", "fingerprints.json")
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model", ignore=caches))


def test_folder_loads_the_written_weights(model_dir):
    loaded = load_model_folder(model_dir, "cpu")
    source, source_text = random_models(SATConfig.tiny(), seed=0)
    image = torch.randn(1, 3, *loaded.config.patch_size)
    with torch.no_grad():
        queries = source_text(["liver", "spleen"], "ct")
        torch.testing.assert_close(loaded.embed(["liver", "spleen"], "ct"), queries)
        torch.testing.assert_close(loaded.model(queries, image), source(queries, image))
    assert not loaded.model.training and loaded.device == torch.device("cpu")


def test_official_pair_loads_with_variant_and_bare_or_single_alias_state_dicts(tmp_path):
    seg, text = write_official_checkpoints(tmp_path, SATConfig.tiny(), seed=5)
    reference = load_official_checkpoints(seg, text, "tiny", "cpu", cache_dir=tmp_path / "cache")
    state = torch.load(seg, weights_only=True)["model_state_dict"]
    one_alias = {k.removeprefix("module."): v for k, v in state.items() if ".all_modules." not in k}
    torch.save(one_alias, tmp_path / "bare.pth")
    again = load_official_checkpoints(tmp_path / "bare.pth", text, "tiny", "cpu", cache_dir=tmp_path / "cache")
    for (k, a), b in zip(reference.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_key_positions_are_real_after_meta_build(model_dir):
    loaded = load_model_folder(model_dir, "cpu")
    expected = SATModel(loaded.config).key_pos
    assert torch.equal(loaded.model.key_pos, expected)


def test_detect_variant(tmp_path):
    seg, _ = write_official_checkpoints(tmp_path, SATConfig.tiny())
    assert detect_variant(torch.load(seg, weights_only=True)["model_state_dict"]) == "tiny"
    with torch.device("meta"):
        pro = SATModel(SATConfig.pro()).state_dict()
    assert detect_variant(pro) == "pro"
    pro.pop("mask_embed_proj.0.bias")
    assert detect_variant(pro) is None


def test_pro_file_offered_as_nano_names_the_right_variant(monkeypatch, tmp_path):
    with torch.device("meta"):
        pro = {f"module.{k}": v for k, v in SATModel(SATConfig.pro()).state_dict().items()}
    monkeypatch.setattr(ckpt, "read_state_dict", lambda path, what="": pro)
    with pytest.raises(ModelError) as info:
        ckpt.segmentation_state(tmp_path / "SAT_Pro.pth", SATConfig.nano())
    assert "SAT-Pro" in info.value.message and "--variant pro" in info.value.hint


def test_tiny_file_offered_as_nano_is_refused(tmp_path):
    seg, text = write_official_checkpoints(tmp_path, SATConfig.tiny())
    with pytest.raises(ModelError, match="tiny test model") as info:
        load_official_checkpoints(seg, text, "nano", "cpu", cache_dir=tmp_path)
    assert "--variant" not in info.value.hint  # the command line accepts only official variants
    assert "Nano/nano.pth" in info.value.hint


def test_unmatched_architecture_lists_the_differences(tmp_path):
    seg, _ = write_official_checkpoints(tmp_path, SATConfig.tiny())
    payload = torch.load(seg, weights_only=True)
    payload["model_state_dict"]["module.extra.weight"] = torch.zeros(2)
    del payload["model_state_dict"]["module.mask_embed_proj.2.bias"]
    torch.save(payload, seg)
    with pytest.raises(ModelError, match="1 missing keys.*mask_embed_proj.2.bias.*1 unexpected keys"):
        ckpt.segmentation_state(seg, SATConfig.tiny())


def test_missing_truncated_and_foreign_files(tmp_path, examples_dir):
    seg, text = write_official_checkpoints(tmp_path, SATConfig.tiny())
    cfg = SATConfig.tiny()
    with pytest.raises(ModelError, match="does not exist"):
        ckpt.segmentation_state(tmp_path / "nano.pth", cfg)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
    with pytest.raises(ModelError, match="incomplete"):
        ckpt.segmentation_state(truncated, cfg)
    (tmp_path / "empty.pth").touch()
    with pytest.raises(ModelError, match="is empty"):
        ckpt.segmentation_state(tmp_path / "empty.pth", cfg)
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        ckpt.segmentation_state(examples_dir / "example_ct_sm.nii.gz", cfg)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        ckpt.text_encoder_state(tmp_path / "notes.txt", cfg)
    torch.save({"epoch": 3, "weights": [1, 2]}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not a SAT checkpoint"):
        ckpt.segmentation_state(tmp_path / "other.pth", cfg)


def test_swapped_files_are_named(tmp_path):
    seg, text = write_official_checkpoints(tmp_path, SATConfig.tiny())
    with pytest.raises(ModelError, match="text-encoder checkpoint, given where the segmentation"):
        load_official_checkpoints(text, seg, "tiny", "cpu", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="segmentation checkpoint, given where the text-encoder"):
        ckpt.text_encoder_state(seg, SATConfig.tiny())


def test_pretrain_and_five_row_text_encoders_are_refused(tmp_path):
    _, text = write_official_checkpoints(tmp_path, SATConfig.tiny())
    payload = torch.load(text, weights_only=True)
    sd = payload["model_state_dict"]
    sd["module.modality_embed.weight"] = torch.zeros(5, SATConfig.tiny().query_dim)
    torch.save(payload, tmp_path / "cvpr.pth")
    with pytest.raises(ModelError, match="5-row modality embedding"):
        ckpt.text_encoder_state(tmp_path / "cvpr.pth", SATConfig.tiny())
    sd["module.atlas_tower.proj.weight"] = torch.zeros(3, 3)
    sd["module.temperature"] = torch.tensor(0.07)
    torch.save(payload, tmp_path / "multimodal_sat_ds.pth")
    with pytest.raises(ModelError, match="SAT-Pretrain.*issue #26"):
        ckpt.text_encoder_state(tmp_path / "multimodal_sat_ds.pth", SATConfig.tiny())


def test_folder_errors(tmp_path, model_dir):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_folder(tmp_path / "nowhere", "cpu")
    (model_dir / "text_encoder.pth").unlink()
    with pytest.raises(ModelError, match="text_encoder.pth does not exist"):
        load_model_folder(model_dir, "cpu")


def test_folder_under_a_non_ascii_path_loads_and_caches(model_dir, tmp_path):
    folder = tmp_path / "Ünïcødé 肝臓" / "model"
    folder.parent.mkdir()
    model_dir.rename(folder)
    expected = load_model_folder(folder, "cpu").embed(["liver"], "ct")
    fresh = load_model_folder(folder, "cpu")
    torch.testing.assert_close(fresh.embed(["liver"], "ct"), expected)
    assert not fresh.text_encoder_loaded  # served from the cache written under the non-ASCII path
    assert (folder / "fingerprints.json").is_file()


def test_fingerprint_is_a_sha256_cached_by_size_and_mtime(model_dir, monkeypatch):
    from SATSegmentLib.model import fingerprint as fp

    first = load_model_folder(model_dir, "cpu").fingerprint
    assert len(first) == 64
    calls = []
    real = fp.sha256_file
    monkeypatch.setattr(fp, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    assert load_model_folder(model_dir, "cpu").fingerprint == first
    assert calls == []
    with open(model_dir / "segmentation.pth", "ab") as fh:  # same file name, different content
        fh.write(b"\0")
    assert fp.fingerprint([model_dir / "segmentation.pth", model_dir / "text_encoder.pth"], model_dir) != first
    assert len(calls) == 1


def test_embedding_cache_avoids_the_text_encoder(model_dir):
    loaded = load_model_folder(model_dir, "cpu")
    first = loaded.embed(["liver", "spleen"], "ct")
    assert loaded.text_encoder_loaded
    fresh = load_model_folder(model_dir, "cpu")
    again = fresh.embed(["Spleen", "liver"], "ct")
    assert not fresh.text_encoder_loaded
    torch.testing.assert_close(again, first.flip(0))
    other_modality = fresh.embed(["liver"], "mri")
    assert fresh.text_encoder_loaded and not torch.allclose(other_modality, first[:1])


def test_released_text_encoder_is_loaded_again_only_for_new_prompts(model_dir):
    loaded = load_model_folder(model_dir, "cpu")
    first = loaded.embed(["liver"], "ct")
    loaded.release_text_encoder()
    assert not loaded.text_encoder_loaded
    torch.testing.assert_close(loaded.embed(["liver"], "ct"), first)
    assert not loaded.text_encoder_loaded
    loaded.embed(["gallbladder"], "ct")
    assert loaded.text_encoder_loaded


def test_precompute_embeddings_fills_the_cache(model_dir):
    loaded = load_model_folder(model_dir, "cpu")
    pairs = [("liver", "ct"), ("brain", "mri"), ("tumor", "pet"), ("liver", "ct")]
    seen = []
    assert precompute_embeddings(loaded, pairs, batch_size=1, progress=lambda d, t: seen.append((d, t))) == 4
    assert seen[-1] == (4, 4)
    fresh = load_model_folder(model_dir, "cpu")
    assert precompute_embeddings(fresh, pairs) == 0
    fresh.embed(["brain"], "mri")
    fresh.embed(["tumor"], "pet")
    assert not fresh.text_encoder_loaded


def test_read_only_folder_still_works(model_dir, tmp_path):
    loaded = load_model_folder(model_dir, "cpu", cache_dir=tmp_path / "cache")
    loaded.embed(["liver"], "ct")
    assert list((tmp_path / "cache" / "text_embeddings").glob("*.pt"))
    assert not (model_dir / "text_embeddings").exists()


def test_device_selection():
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device("CPU") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA was requested"):
            resolve_device("cuda")
    with pytest.raises(DeviceError):
        resolve_device("tpu")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SATSEGMENT_HEAVY_TESTS"),
                    reason="writes ~0.9 GB of SAT-Nano files; set SATSEGMENT_HEAVY_TESTS=1 (and run under the heavy lock)")
def test_full_size_nano_folder_loads_strictly(tmp_path):
    folder = write_official_checkpoints(tmp_path, SATConfig.nano(), seed=0)[0].parent
    SATConfig.nano().save(folder)
    loaded = load_model_folder(folder, "cpu")
    written = torch.load(folder / "segmentation.pth", weights_only=True, mmap=True)["model_state_dict"]
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, written[f"module.{key}"]), key
    assert loaded.embed(["liver"], "ct").shape == (1, 768)
