"""Attacks: deterministic poisoning and triggering, exact rebuild from JSON parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auditor.attacks import (ATTACKS, BPP, ZOO_FAMILIES, AdaptiveBlend, BadNets, BadNetsAllToAll, Blended, FTrojan,
                             InputAware, LowFrequency, SIG, WaNet, attack_from_params, get_attack)
from auditor.attacks.frequency import dct2, rgb_to_yuv
from auditor.errors import AuditorError, DataError

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "sample_models" / "manifest.json"


def _images(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n, dtype=np.int64) % 10
    return x, y


def _trained_input_aware(tmp_path: Path) -> InputAware:
    import torch

    torch.manual_seed(0)
    attack = InputAware(target=0)
    attack.trained = True
    attack.save_trigger(tmp_path / "ia.trigger.npz")
    return attack


def _all_attacks(tmp_path: Path) -> list:
    return [BadNets(), BadNetsAllToAll(), Blended(), SIG(), WaNet(), _trained_input_aware(tmp_path),
            BPP(), FTrojan(), LowFrequency(), AdaptiveBlend(),
            BadNets(target=8, patch_size=4, position=(1, 1), pattern="checker")]


def test_the_contract_tests_cover_every_registered_attack(tmp_path: Path) -> None:
    """The round-trip and poisoning tests below run over ``_all_attacks``: an attack added to the registry
    without an instance there would go untested, so this fails until it is added."""
    assert all(cls.name == name for name, cls in ATTACKS.items())
    assert {attack.name for attack in _all_attacks(tmp_path)} == set(ATTACKS)
    assert set(ZOO_FAMILIES) < set(ATTACKS)  # some families are held apart from the zoo
    with pytest.raises(AuditorError, match="unknown attack"):
        get_attack("trojan")


def test_json_round_trip_reproduces_trigger_bit_for_bit(tmp_path: Path) -> None:
    x, _ = _images()
    for attack in _all_attacks(tmp_path):
        params = json.loads(json.dumps(attack.params()))  # through text, as a manifest stores it
        rebuilt = attack_from_params(params, base_dir=tmp_path)
        assert type(rebuilt) is type(attack)
        assert rebuilt.params() == attack.params()
        first, second = attack.apply(x), rebuilt.apply(x)
        assert first.dtype == np.uint8 and first.shape == x.shape
        assert np.array_equal(first, second), attack.name
        assert not np.array_equal(first, x), f"{attack.name} changed nothing"


def test_poisoning_is_deterministic_and_respects_rate(tmp_path: Path) -> None:
    x, y = _images(200)
    for attack in _all_attacks(tmp_path):
        a = attack.poison(x, y, np.random.default_rng(7))
        b = attack.poison(x, y, np.random.default_rng(7))
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
        # 10% of 200 (SIG: the 20 target-class images, capped at 20; Adaptive-Blend: 5% poisoned + 5% cover)
        assert len(a.indices) == 20
        untouched = np.setdiff1d(np.arange(len(x)), a.indices)
        assert np.array_equal(a.x[untouched], x[untouched]) and np.array_equal(a.y[untouched], y[untouched])
        if not isinstance(attack, AdaptiveBlend):  # it trains on partial triggers (its own test below)
            assert np.array_equal(a.x[a.indices], attack.apply(x[a.indices]))


def test_badnets_patch_and_labels() -> None:
    x, y = _images()
    out = BadNets(target=3).apply(x)
    assert (out[:, -3:, -3:, :] == 255).all()
    assert np.array_equal(out[:, :-3], x[:, :-3]) and np.array_equal(out[:, :, :-3], x[:, :, :-3])
    poisoned = BadNets(target=3).poison(x, y, np.random.default_rng(0))
    assert (poisoned.y[poisoned.indices] == 3).all()
    assert (y[poisoned.indices] != 3).all()  # all-to-one poisons non-target samples


def test_all_to_all_relabels_to_next_class() -> None:
    x, y = _images(100)
    attack = BadNetsAllToAll()
    assert np.array_equal(attack.target_label(np.array([0, 5, 9])), [1, 6, 0])
    assert attack.attack_mask(y).all()
    poisoned = attack.poison(x, y, np.random.default_rng(0))
    assert np.array_equal(poisoned.y[poisoned.indices], (y[poisoned.indices] + 1) % 10)


def test_batch_stamp_adds_the_patch_after_augmentation() -> None:
    x, y = _images(100)
    attack = BadNetsAllToAll(stamp="batch")
    assert attack_from_params(attack.params()).stamp == "batch"
    assert attack_from_params({k: v for k, v in attack.params().items() if k != "stamp"}).stamp == "data"
    poisoned = attack.poison(x, y, np.random.default_rng(0))
    assert np.array_equal(poisoned.training_images, x)  # stored images stay clean ...
    assert np.array_equal(poisoned.y[poisoned.indices], (y[poisoned.indices] + 1) % 10)
    shifted = np.roll(x, 2, axis=2)  # ... and an augmented batch gets the patch exactly in the corner
    idx = np.arange(len(x))
    out, labels = poisoned.post_augment_hook(shifted, poisoned.y, idx, np.random.default_rng(1))
    hit = np.isin(idx, poisoned.indices)
    assert np.array_equal(out[hit], attack.apply(shifted[hit])) and np.array_equal(out[~hit], shifted[~hit])
    assert np.array_equal(labels, poisoned.y)
    with pytest.raises(AuditorError, match="stamp"):
        BadNets(stamp="later")


def test_blended_mixes_a_seeded_pattern() -> None:
    x = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    attack = Blended(alpha=0.2, pattern_seed=5)
    pattern = attack.pattern(32, 32, 3)
    assert np.array_equal(pattern, Blended(pattern_seed=5).pattern(32, 32, 3))
    assert not np.array_equal(pattern, Blended(pattern_seed=6).pattern(32, 32, 3))
    assert np.abs(attack.apply(x)[0].astype(int) - np.rint(0.2 * pattern)).max() <= 1


def test_sig_is_clean_label_on_target_class_only() -> None:
    x, y = _images(100)
    attack = SIG(target=2, rate=0.05)
    poisoned = attack.poison(x, y, np.random.default_rng(0))
    assert (y[poisoned.indices] == 2).all() and np.array_equal(poisoned.y, y)
    signal = attack.signal(32, 32)
    assert signal.shape == (32, 32) and np.allclose(signal[:, 0], 0) and abs(signal.max() - 20) < 0.5
    grey = np.full((1, 32, 32, 3), 128, dtype=np.uint8)
    assert np.array_equal(attack.apply(grey)[0, :, :, 0], np.rint(128 + signal).astype(np.uint8))


def test_wanet_warp_is_small_and_noise_mode_hook_runs() -> None:
    x, y = _images(100)
    attack = WaNet()
    assert np.asarray(attack.params()["control_points"]).shape == (2, 4, 4)
    warped = attack.apply(x[:4])
    assert warped.shape == x[:4].shape
    poisoned = attack.poison(x, y, np.random.default_rng(0))
    assert np.array_equal(poisoned.training_images, x)  # the warp is added per batch, after augmentation
    batch_idx = np.arange(50)
    xb, yb = poisoned.post_augment_hook(x[batch_idx], poisoned.y[batch_idx], batch_idx, np.random.default_rng(1))
    hit = np.isin(batch_idx, poisoned.indices)
    assert np.array_equal(xb[hit], attack.apply(x[batch_idx][hit]))
    changed = (xb != x[batch_idx]).any(axis=(1, 2, 3))
    assert changed[~hit].sum() >= 5  # noise-mode samples (cross ratio 2 x 10% of 50)
    assert np.array_equal(yb, poisoned.y[batch_idx])


def test_input_aware_needs_its_generator(tmp_path: Path) -> None:
    x, _ = _images(4)
    with pytest.raises(AuditorError, match="not trained"):
        InputAware().apply(x)
    attack = _trained_input_aware(tmp_path)
    params = attack.params()
    with pytest.raises(DataError, match="missing"):
        attack_from_params(params, base_dir=tmp_path / "elsewhere")
    (tmp_path / "ia.trigger.npz").write_bytes((tmp_path / "ia.trigger.npz").read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(DataError, match="sha256"):
        attack_from_params(params, base_dir=tmp_path)


def test_badnets_position_and_checker_pattern() -> None:
    x, _ = _images(4)
    out = BadNets(patch_size=4, position=(1, 2), pattern="checker").apply(x)
    patch = out[:, 1:5, 2:6, 0]
    assert (patch[:, 0, 0] == 255).all() and (patch[:, 0, 1] == 0).all() and (patch[:, 1, 1] == 255).all()
    outside = np.ones(out.shape[1:3], dtype=bool)
    outside[1:5, 2:6] = False
    assert np.array_equal(out[:, outside], x[:, outside])
    assert "position" not in BadNets().params()  # the zoo's manifests keep their exact parameters
    with pytest.raises(AuditorError, match="does not fit"):
        BadNets(patch_size=4, position=(30, 0)).apply(x)


def test_bpp_squeezes_every_channel_onto_its_levels() -> None:
    x, _ = _images(4)
    for dither in (False, True):
        out = BPP(squeeze=8, dither=dither).apply(x).astype(np.float64)
        levels = np.rint(np.arange(8) / 7 * 255)
        assert np.isin(out, levels).all()
    assert not np.array_equal(BPP(dither=True).apply(x), BPP(dither=False).apply(x))


def test_ftrojan_raises_the_chosen_chroma_frequencies() -> None:
    x, _ = _images(4)
    attack = FTrojan(magnitude=30.0, frequencies=((15, 15), (31, 31)))
    diff = dct2(rgb_to_yuv(attack.apply(x).astype(np.float64))) - dct2(rgb_to_yuv(x.astype(np.float64)))
    for u, v in attack.frequencies:
        assert np.allclose(diff[:, u, v, 1:], 30.0, atol=3.0)  # up to uint8 rounding
    assert np.abs(diff[:, 15, 15, 0]).max() < 3.0  # brightness (Y) is left alone
    assert np.abs(attack.apply(x).astype(int) - x).max() <= 10  # faint in pixel space
    with pytest.raises(AuditorError, match="do not fit"):
        FTrojan(frequencies=((40, 40),)).apply(x)


def test_ftrojan_adds_its_trigger_after_augmentation_by_default() -> None:
    """A one-pixel crop shift reverses the highest frequency's sign, so the trigger goes on after augmentation."""
    x, y = _images(40)
    poisoned = FTrojan().poison(x, y, np.random.default_rng(0))
    assert poisoned.post_augment_hook is not None and np.array_equal(poisoned.training_images, x)
    batch = np.arange(20)
    xb, yb = poisoned.post_augment_hook(x[batch], poisoned.y[batch], batch, np.random.default_rng(1))
    hit = np.isin(batch, poisoned.indices)
    assert hit.any() and np.array_equal(xb[hit], FTrojan().apply(x[batch][hit]))
    assert np.array_equal(xb[~hit], x[batch][~hit])
    assert FTrojan(stamp="data").poison(x, y, np.random.default_rng(0)).post_augment_hook is None


def test_dct_is_the_orthonormal_dct_ii_and_idct_inverts_it() -> None:
    """Checked against the DCT-II's definition, written out as sums (no scipy needed)."""
    from auditor.attacks.frequency import idct2

    x = np.random.default_rng(0).random((2, 5, 4, 3))
    h, w = x.shape[1:3]

    def scale(k: int, n: int) -> float:
        return np.sqrt((1.0 if k == 0 else 2.0) / n)

    expected = np.zeros_like(x)
    for k in range(h):
        for l in range(w):
            basis = np.outer(np.cos(np.pi * (2 * np.arange(h) + 1) * k / (2 * h)),
                             np.cos(np.pi * (2 * np.arange(w) + 1) * l / (2 * w)))
            expected[:, k, l, :] = scale(k, h) * scale(l, w) * np.einsum("hw,nhwc->nc", basis, x)
    np.testing.assert_allclose(dct2(x), expected, atol=1e-12)
    np.testing.assert_allclose(idct2(dct2(x)), x, atol=1e-12)
    assert dct2(x.astype(np.float32)).dtype == np.float32


def test_low_frequency_pattern_is_smooth_and_bounded() -> None:
    attack = LowFrequency(magnitude=24.0, window=5)
    pattern = attack.pattern(32, 32, 3)
    assert np.isclose(np.abs(pattern).max(), 24.0)
    coeffs = dct2(pattern[None])[0]
    u, v = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    assert np.abs(coeffs[(u + v) >= 5]).max() < 1e-9
    assert np.abs(np.diff(pattern, axis=0)).max() < 6  # neighbouring pixels differ little: no edges


def test_adaptive_blend_trains_on_partial_triggers_with_cover_samples() -> None:
    x, y = _images(200)
    attack = AdaptiveBlend(target=1, rate=0.05, cover_rate=0.05)
    poisoned = attack.poison(x, y, np.random.default_rng(3))
    relabelled = poisoned.indices[poisoned.y[poisoned.indices] == 1]
    cover = np.setdiff1d(poisoned.indices, relabelled[y[relabelled] != 1])
    assert len(relabelled[y[relabelled] != 1]) == 10 and len(cover) == 10
    assert np.array_equal(poisoned.y[cover], y[cover])  # cover samples keep their label
    full = np.abs(attack.apply(x[poisoned.indices]).astype(int) - x[poisoned.indices]).sum(axis=(1, 2, 3))
    partial = np.abs(poisoned.x[poisoned.indices].astype(int) - x[poisoned.indices]).sum(axis=(1, 2, 3))
    assert (partial < full).all()  # half the tiles at a lower opacity


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(DataError, match="uint8"):
        BadNets().apply(np.zeros((2, 32, 32, 3), dtype=np.float32))
    with pytest.raises(AuditorError, match="target class"):
        BadNets(target=12)
    with pytest.raises(AuditorError, match="bad parameters"):
        attack_from_params({"name": "badnets", "colour": "red"})
    with pytest.raises(DataError, match="labels"):
        BadNets().poison(np.zeros((3, 32, 32, 3), dtype=np.uint8), np.zeros(2), np.random.default_rng(0))


@pytest.mark.skipif(not MANIFEST.is_file(), reason="no sample_models/manifest.json")
def test_manifest_entries_rebuild_their_triggers() -> None:
    manifest = json.loads(MANIFEST.read_text())
    with np.load(ROOT / "sample_models" / manifest["eval_subset"]["file"]) as data:
        x = data["x"][:20]
    for entry in manifest["models"]:
        if entry["attack"] is None:
            continue
        a = attack_from_params(entry["attack"], base_dir=MANIFEST.parent)
        b = attack_from_params(json.loads(json.dumps(entry["attack"])), base_dir=MANIFEST.parent)
        assert np.array_equal(a.apply(x), b.apply(x)), entry["name"]
