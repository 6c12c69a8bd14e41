"""Data loaders: the real sets when present, the user formats, and clear errors on bad input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from auditor.data.fashion import load_fashion_mnist, read_idx
from auditor.data.formats import load_eval_data, load_image_folder, load_npz
from auditor.data.mnist import load_mnist
from auditor.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "sample_models" / "cifar10_test_1000.npz"
SHARED = ROOT.parent / "shared" / "data"


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_round_trip_and_grey_images(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    xs, ys = load_npz(_npz(tmp_path / "a.npz", x=x, y=np.arange(5)))
    assert np.array_equal(xs, x) and ys.dtype == np.int64
    grey, _ = load_npz(_npz(tmp_path / "g.npz", x=x[..., 0], y=np.arange(5)))
    assert grey.shape == (5, 8, 8, 1)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((3, 8, 8, 3), np.uint8)}, "missing array"),
    ({"x": np.zeros((3, 8, 8, 3), np.float32), "y": np.zeros(3)}, "uint8"),
    ({"x": np.zeros((3, 8, 8, 3), np.uint8), "y": np.zeros(4)}, "3 images but 4 labels"),
    ({"x": np.zeros((3, 8, 8, 3), np.uint8), "y": np.array([0, -1, 2])}, "negative label"),
    ({"x": np.zeros((3, 8, 8, 5), np.uint8), "y": np.zeros(3)}, "shape"),
    ({"x": np.zeros((3, 8, 8, 3), np.uint8), "y": np.array([0.5, 1, 2])}, "integer class labels"),
])
def test_npz_rejects_bad_arrays(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_npz(_npz(tmp_path / "bad.npz", **arrays))


def test_npz_rejects_corrupt_truncated_and_pickled_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(junk)
    good = _npz(tmp_path / "good.npz", x=np.zeros((100, 8, 8, 3), np.uint8), y=np.zeros(100))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError):
        load_npz(cut)
    pickled = _npz(tmp_path / "obj.npz", x=np.array([object()], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match="pickled"):
        load_npz(pickled)
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "absent.npz")
    with pytest.raises(DataError, match="label 7 is out of range"):
        load_npz(_npz(tmp_path / "lab.npz", x=np.zeros((2, 4, 4, 1), np.uint8), y=np.array([0, 7])), num_classes=5)


def _write_folder(root: Path) -> None:
    from PIL import Image

    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * label + i, np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_loads_classes_in_sorted_order(tmp_path: Path) -> None:
    _write_folder(tmp_path / "data")
    x, y, names = load_image_folder(tmp_path / "data")
    assert names == ["cat", "dog"] and x.shape == (6, 8, 8, 3) and list(y) == [0, 0, 0, 1, 1, 1]
    assert x[3, 0, 0, 0] == 40
    x2, y2, _ = load_eval_data(tmp_path / "data", expect_shape=(8, 8, 3))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    with pytest.raises(DataError, match=r"the model takes \(16, 16, 3\)|expected 16x16"):
        load_eval_data(tmp_path / "data", expect_shape=(16, 16, 3))


def test_image_folder_rejects_corrupt_and_odd_input(tmp_path: Path) -> None:
    _write_folder(tmp_path / "data")
    (tmp_path / "data" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_image_folder(tmp_path / "data")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_image_folder(tmp_path / "flat")
    _write_folder(tmp_path / "named")
    with pytest.raises(DataError, match="not among the class names"):
        load_image_folder(tmp_path / "named", class_names=["cat", "bird"])
    from PIL import Image

    _write_folder(tmp_path / "sizes")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "sizes" / "dog" / "big.png")
    with pytest.raises(DataError, match="expected 8x8"):
        load_image_folder(tmp_path / "sizes")


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_reader_and_fashion_folder(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    labels = np.array([0, 3, 9, 1], np.uint8)
    folder = tmp_path / "fm"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    x, y = load_fashion_mnist("test", folder)
    assert x.shape == (4, 28, 28, 1) and np.array_equal(x[..., 0], images) and list(y) == [0, 3, 9, 1]
    truncated = tmp_path / "cut-idx"
    truncated.write_bytes(_idx_bytes(images)[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(truncated)
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", folder)  # the train files are absent
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path / "nowhere")


def test_mnist_loader_checks_its_file(tmp_path: Path) -> None:
    x = np.zeros((3, 28, 28), np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.array([1, 2, 3], np.uint8), x_test=x, y_test=np.zeros(3, np.uint8))
    xs, ys = load_mnist("train", data_dir=tmp_path)
    assert xs.shape == (3, 28, 28, 1) and list(ys) == [1, 2, 3]
    np.savez(tmp_path / "mnist.npz", x_train=x)
    with pytest.raises(DataError, match="missing array"):
        load_mnist("test", data_dir=tmp_path)
    with pytest.raises(DataError, match="mnist.npz is missing"):
        load_mnist("test", data_dir=tmp_path / "..")
    with pytest.raises(DataError, match="does not exist"):
        load_mnist("test", data_dir=tmp_path / "nope")


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.data.cifar10 import load_cifar10

    monkeypatch.setenv("AUDITOR_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="cifar10.zip is missing"):
        load_cifar10("test")
    monkeypatch.setenv("AUDITOR_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="AUDITOR_DATA_DIR"):
        load_cifar10("test")
    with pytest.raises(DataError, match="splits"):
        load_cifar10("validation")


@pytest.mark.skipif(not (SHARED / "cifar10.zip").is_file(), reason="../shared/data not present")
def test_real_cifar10_and_mnist() -> None:
    from auditor.data.cifar10 import load_cifar10

    x, y = load_cifar10("test", data_dir=SHARED)
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8 and (np.bincount(y) == 1000).all()
    xm, ym = load_mnist("test", data_dir=SHARED)
    assert xm.shape == (10000, 28, 28, 1) and set(np.unique(ym)) == set(range(10))


@pytest.mark.skipif(not SUBSET.is_file(), reason="evaluation subset not built yet")
def test_committed_eval_subset_is_balanced() -> None:
    x, y = load_npz(SUBSET, num_classes=10)
    assert x.shape == (1000, 32, 32, 3) and (np.bincount(y) == 100).all()
