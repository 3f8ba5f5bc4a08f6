"""Dataset sources: one protocol for digits, arrays, files, image folders and DataLoaders."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from convsvd.data import ArrayData, Batch, DataSource, ExpectedInput, ImageFolder, LoaderData, as_source, load_digits
from convsvd.errors import InputError
from convsvd.signals import profile


def all_batches(src: DataSource, bs: int, which=None) -> list[tuple[int, Batch]]:
    return list(src.iter_batches(bs, which))


def test_arrays_batches_are_fixed_slices():
    x = torch.arange(10 * 4, dtype=torch.float32).reshape(10, 1, 2, 2)
    src = ArrayData(x, np.arange(10) % 2, ids=np.arange(50, 60))
    assert isinstance(src, DataSource) and src.num_batches(4) == 3
    got = all_batches(src, 4, which=[2, 0])
    assert [b for b, _ in got] == [2, 0]
    b2 = got[0][1]
    ids, inputs, labels = b2  # a batch unpacks as (ids, inputs, labels)
    assert ids.tolist() == [58, 59] and labels.tolist() == [0, 1] and torch.equal(inputs, x[8:])
    unlabelled = ArrayData(np.zeros((3, 2), dtype=np.int64))
    (_, b), = all_batches(unlabelled, 8)
    assert b.labels.tolist() == [-1, -1, -1] and b.ids.tolist() == [0, 1, 2] and b.inputs.dtype == torch.float32


@pytest.mark.parametrize("kwargs,message", [
    (dict(inputs=torch.zeros(0, 1, 2, 2)), "is empty"),
    (dict(inputs=torch.zeros(3)), "expected \\(N, C"),
    (dict(inputs=torch.zeros(3, 1, 2, 2), labels=torch.zeros(4)), "labels: expected \\(3,\\)"),
    (dict(inputs=torch.zeros(3, 1, 2, 2), ids=[1, 1, 2]), "duplicates"),
    (dict(inputs=torch.zeros(3, 1, 2, 2), labels=[0, 1, 5], classes=["a", "b"]), "label 5 has no name"),
])
def test_arrays_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        ArrayData(**kwargs)


def test_conform_says_what_the_model_expects():
    src = ArrayData(torch.zeros(2, 3, 8, 8), name="mine")
    with pytest.raises(InputError, match=r"mine inputs: are 3×8×8 \(channels first\), model expects 1×8×8"):
        src.conform(ExpectedInput("conv1", "conv2d", 1, (8, 8)))
    with pytest.raises(InputError, match=r"images are 8×8, model expects 3×32×32"):
        src.conform(ExpectedInput("c", "conv2d", 3, (32, 32)))
    with pytest.raises(InputError, match=r"have 8 features .* model expects 5 input features"):
        src.conform(ExpectedInput("fc", "linear", 5))
    assert src.conform(ExpectedInput("fc", "linear", 3 * 8 * 8)) is src  # a model that flattens its images first
    assert src.conform(ExpectedInput("c", "conv2d", 3)) is src


def test_digits_adapter_keeps_ids_labels_and_classes():
    src = as_source("digits:test")
    ref = load_digits("test")
    assert len(src) == 451 and src.classes == ref.classes
    (_, b), = all_batches(src, 100, which=[3])
    assert torch.equal(b.ids, ref.ids[300:400]) and torch.equal(b.labels, ref.labels[300:400])
    assert torch.equal(b.inputs, ref.images[300:400])
    assert len(as_source("digits")) == 1797
    with pytest.raises(InputError, match="digits:train\\|test\\|all"):
        as_source("digits:val")


def test_npz_and_pt_files(tmp_path):
    x = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=x, y=np.arange(5), classes=np.array(list("abcde")))
    src = as_source(tmp_path / "d.npz")
    assert src.classes == list("abcde") and np.array_equal(src.inputs.numpy(), x) and src.labels.tolist() == [0, 1, 2, 3, 4]
    torch.save({"inputs": torch.from_numpy(x), "labels": torch.arange(5), "ids": torch.arange(10, 15)}, tmp_path / "d.pt")
    assert as_source(tmp_path / "d.pt").ids.tolist() == list(range(10, 15))
    torch.save((torch.from_numpy(x), torch.arange(5)), tmp_path / "t.pt")
    assert len(as_source(tmp_path / "t.pt")) == 5
    np.savez(tmp_path / "bad.npz", labels=np.arange(5))
    with pytest.raises(InputError, match="no inputs array"):
        as_source(tmp_path / "bad.npz")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InputError, match="expected a .npz or .pt"):
        as_source(tmp_path / "x.csv")


# --------------------------------------------------------------------------- image folders


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "imgs"
    for cls, n in [("cat", 3), ("dog", 2)]:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = (rng.random((12, 10, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    Image.fromarray((rng.random((5, 5)) * 255).astype(np.uint8), mode="L").save(root / "dog" / "grey.jpg")
    (root / "cat" / "notes.txt").write_text("not an image")
    good = (root / "cat" / "0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])  # header reads, pixels do not
    (root / "README").write_text("top-level file")
    (root / "cat" / ".DS_Store").write_bytes(b"\0")
    return root


def test_image_folder_classes_ids_and_skipped_files(folder):
    src = ImageFolder(folder)
    assert src.classes == ["cat", "dog"]
    skipped = dict(src.skipped)
    assert skipped["README"] == "not in a class subfolder"
    assert "cat/notes.txt" in skipped and "cannot identify image file" in skipped["cat/notes.txt"]
    assert len(src) == 7  # 3 cats, 3 dogs and the truncated file, whose header reads
    batches = all_batches(src.conform(ExpectedInput("c", "conv2d", 1, (8, 8))), 4)
    ids = torch.cat([b.ids for _, b in batches]).tolist()
    labels = torch.cat([b.labels for _, b in batches]).tolist()
    assert ids == [0, 1, 2, 4, 5, 6] and labels == [0, 0, 0, 1, 1, 1]  # id 3 is notes.txt, id 7 the truncated file
    conformed = batches[0][1]
    assert conformed.inputs.shape == (4, 1, 8, 8)


def test_image_folder_lists_files_that_fail_to_decode(folder):
    src = ImageFolder(folder).conform(ExpectedInput("c", "conv2d", 3, (6, 6)))
    list(src.iter_batches(10))
    assert any(item == "dog/truncated.png" for item, _ in src.skipped)


def test_image_folder_transform_matches_the_model(folder):
    src = ImageFolder(folder).conform(ExpectedInput("conv1", "conv2d", 1, (8, 8)))
    desc = src.describe()
    assert desc["input_shape"] == [1, 8, 8]
    assert "convert to L" in desc["transform"] and "resize to 8×8" in desc["transform"]
    x = src.load(0)
    with Image.open(folder / "cat" / "0.png") as im:
        ref = np.asarray(im.convert("L").resize((8, 8), Image.BILINEAR), dtype=np.float32) / 255
    np.testing.assert_array_equal(x.numpy()[0], ref)
    native = ImageFolder(folder)  # no model information: the first image's size and mode
    assert native.describe()["input_shape"] == [3, 12, 10] and "the first image's size" in native.transform_text()
    norm = ImageFolder(folder, mean=[0.5], std=[0.25]).conform(ExpectedInput("c", "conv2d", 1, (8, 8)))
    torch.testing.assert_close(norm.load(0), (x - 0.5) / 0.25)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.mkdir(), "is empty"),
    (lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"x")), "has no class subfolders"),
    (lambda p: (p.mkdir(), (p / "c").mkdir()), "hold no files"),
    (lambda p: (p.mkdir(), (p / "c").mkdir(), (p / "c" / "a.png").write_text("no")), "none of its 1 files is an image"),
    (lambda p: p.write_text("file"), "is not a folder"),
])
def test_image_folder_errors(tmp_path, make, message):
    make(tmp_path / "root")
    with pytest.raises(InputError, match=message) as e:
        ImageFolder(tmp_path / "root")
    assert "\n" not in str(e.value)


def test_profile_an_image_folder_with_the_digits_cnn(folder, tmp_path):
    from convsvd import zoo

    table = profile(zoo.load("digits-cnn"), folder, input_shape=(1, 8, 8), out=tmp_path / "run", batch_size=4)
    assert table.n_inputs == 6  # truncated.png is skipped while loading
    skipped = {item for item, _ in table.manifest["skipped_inputs"]}
    assert {"README", "cat/notes.txt", "dog/truncated.png"} <= skipped
    assert table.manifest["dataset"]["transform"].startswith("convert to L (1 channel) · resize to 8×8")
    assert set(table.to_frame(columns=["id"]).id) == {0, 1, 2, 4, 5, 6}


# --------------------------------------------------------------------------- loaders


class DictDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.x = torch.randn(n, 2, 3, 3)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": i % 2, "id": 1000 + i}


def test_dataloader_batches_ids_and_selection():
    x, y = torch.randn(7, 1, 3, 3), torch.arange(7)
    src = LoaderData(DataLoader(TensorDataset(x, y), batch_size=3))
    assert src.num_batches(999) == 3 and src.fixed_batch_size == 3
    got = all_batches(src, 999, which=[0, 2])
    assert [b for b, _ in got] == [0, 2]
    assert got[1][1].ids.tolist() == [6] and torch.equal(got[1][1].inputs, x[6:])  # ids count the skipped batch too
    ds = LoaderData(DictDataset(5))
    (b, batch), = all_batches(ds, 2, which=[1])
    assert b == 1 and batch.ids.tolist() == [1002, 1003] and batch.labels.tolist() == [0, 1]
    with pytest.raises(InputError, match="shuffle=True"):
        LoaderData(DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True))
    checked = src.conform(ExpectedInput("c", "conv2d", 3))
    with pytest.raises(InputError, match="model expects 3 channels"):
        all_batches(checked, 3)


def test_profile_a_dataloader_equals_the_arrays(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 2), torch.nn.Flatten(), torch.nn.Linear(12, 2)).double().eval()
    x, y = torch.randn(9, 1, 3, 3, dtype=torch.float64), torch.arange(9) % 2
    a = profile(net, (x, y), batch_size=4, out=tmp_path / "a").to_frame()
    b = profile(net, DataLoader(TensorDataset(x, y), batch_size=4), out=tmp_path / "b").to_frame()
    key = ["id", "layer", "neuron"]
    assert a.sort_values(key).reset_index(drop=True).equals(b.sort_values(key).reset_index(drop=True))


def test_files_and_loader_batches_name_their_arrays_the_same_ways(tmp_path):
    from convsvd.data.protocol import ID_KEYS, INPUT_KEYS, LABEL_KEYS

    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    for xk, yk, ik in zip(INPUT_KEYS, LABEL_KEYS * 2, ID_KEYS * 2):
        np.savez(tmp_path / "d.npz", **{xk: x, yk: np.arange(4), ik: np.arange(10, 14)})
        _, batch = next(iter(as_source(tmp_path / "d.npz").iter_batches(4)))
        assert batch.ids.tolist() == [10, 11, 12, 13] and batch.labels.tolist() == [0, 1, 2, 3], (xk, yk, ik)
        items = [{xk: torch.from_numpy(x[i]), yk: i, ik: 10 + i} for i in range(4)]
        _, batch = next(iter(as_source(DataLoader(items, batch_size=4)).iter_batches(4)))
        assert batch.ids.tolist() == [10, 11, 12, 13] and batch.labels.tolist() == [0, 1, 2, 3], (xk, yk, ik)
