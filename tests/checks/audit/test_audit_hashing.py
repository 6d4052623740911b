"""D5 hashing: content hashes of what datasets return, equal across read paths, sensitive to dtype and shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from audit_planted import ItemDataset
from torch.utils.data import Subset, TensorDataset

from danlu.checks.audit.inputs import as_array, hash_rows, hash_value, split_item
from danlu.checks.audit.scan import scan_split


def test_row_hash_equals_item_hash():
    x = torch.randn(5, 3, 4)
    rows = hash_rows(x.numpy())
    assert [int(h) for h in rows] == [hash_value(x[i]) for i in range(5)]
    assert len(set(rows.tolist())) == 5


def test_same_bytes_other_dtype_or_shape_differ():
    a = np.arange(12, dtype=np.int32)
    assert hash_value(a) != hash_value(a.reshape(3, 4))
    assert hash_value(a) != hash_value(a.view(np.float32))
    assert hash_value(a) == hash_value(torch.from_numpy(a.copy()))  # torch and numpy spell dtypes alike
    assert hash_value(3) == hash_value(torch.tensor(3))            # python int = 0-d int64
    assert hash_value(3) != hash_value(4)
    assert hash_value(np.int64(7)) != hash_value(np.float64(7))


def test_structured_values_hash_by_content():
    a = {"ids": torch.tensor([1, 2, 3]), "mask": torch.tensor([1, 1, 0])}
    b = {"mask": torch.tensor([1, 1, 0]), "ids": torch.tensor([1, 2, 3])}
    assert hash_value(a) == hash_value(b)
    assert hash_value("a cat") != hash_value("a dog")
    assert hash_value((torch.ones(2), 1)) != hash_value((torch.ones(2), 2))


def test_bfloat16_is_hashed():
    x = torch.randn(4, 3).to(torch.bfloat16)
    assert as_array(x).dtype == np.float32
    assert hash_value(x[0]) == int(hash_rows(as_array(x), "bfloat16")[0])
    assert hash_value(x[0]) != hash_value(x[0].float())  # the dtype is part of the hash


def test_bulk_and_item_paths_agree():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 1, 8, 8, generator=g)
    y = torch.randint(0, 5, (300,), generator=g)
    bulk = scan_split("t", TensorDataset(x, y))
    items = scan_split("t", ItemDataset([(x[i], int(y[i])) for i in range(300)]))
    tensors = scan_split("t", ItemDataset([(x[i], y[i]) for i in range(300)]))
    assert np.array_equal(bulk.input_hash, items.input_hash)
    assert np.array_equal(bulk.target_hash, items.target_hash)
    assert np.array_equal(bulk.target_hash, tensors.target_hash)
    assert np.allclose(bulk.moments.mean, items.moments.mean)
    # a Subset of a TensorDataset is read in bulk too, through its index map
    sub = scan_split("t", Subset(TensorDataset(x, y), [5, 3, 9]))
    assert sub.input_hash.tolist() == bulk.input_hash[[5, 3, 9]].tolist()


def test_split_item_shapes():
    assert split_item((1, 2))[:2] == (1, 2)
    assert split_item((1, 2, {"src": "a"}))[2] == {"src": "a"}
    x, y, meta = split_item({"image": 1, "label": 2, "source": "b"})
    assert (x, y, meta) == (1, 2, {"source": "b"})
    assert split_item(torch.zeros(2))[1] is None


class Batched(ItemDataset):
    """A dataset with __getitems__ (read a chunk at a time), which fails as a whole on a bad item."""

    def __getitems__(self, indices):
        return [self[i] for i in indices]


def test_chunked_reads_fall_back_to_items_when_one_fails():
    items = [(torch.full((3,), float(i)), i % 2) for i in range(600)]
    items[300] = ValueError("row 300 is truncated")
    scan = scan_split("t", Batched(items))
    assert [p.index for p in scan.errors] == [300]
    assert "ValueError: row 300 is truncated" in scan.errors[0].error
    assert scan.ok.sum() == 599
    plain = scan_split("t", ItemDataset(items))
    assert np.array_equal(scan.input_hash, plain.input_hash)


def test_text_inputs_are_hashed_and_measured_in_words():
    from audit_planted import audit, recipe

    train = ItemDataset([(f"sample number {i} " + "word " * (i % 7), i % 2) for i in range(100)])
    val = ItemDataset([("sample number 5 " + "word " * 5, 1), ("something else", 0)])
    rep = audit(recipe(train, val), progress=False, only=["D2", "D5"])
    leak = rep.finding("D5")
    assert leak.name == "train/val leakage" and leak.evidence["pair_list"] == [[5, 0]]
    lengths = next(f for f in rep.findings if f.name == "sequence lengths")
    assert lengths.evidence["train"]["min"] == 3 and lengths.evidence["train"]["max"] == 9
    near = next(f for f in rep.findings if f.name == "near duplicates")
    assert near.status == "skip" and "text" in near.summary


@pytest.mark.parametrize("shape,dtype,kind", [
    ((8, 8), np.float32, "image"),            # digits
    ((28, 28), np.uint8, "image"),
    ((3, 32, 32), np.float32, "image"),
    ((32, 32, 3), np.uint8, "image"),          # HWC
    ((16, 64, 64), np.float32, "image"),       # many channels, image-like sides
    ((128, 44), np.float32, "image"),          # a spectrogram, drawn as an image
    ((20, 1), np.float32, "sequence"),         # a univariate series for a GRU
    ((100, 8), np.float32, "sequence"),        # steps x features
    ((12, 1000), np.float32, "sequence"),      # channels x steps (ECG, Conv1d)
    ((50, 300), np.float32, "sequence"),       # word vectors
    ((20,), np.int64, "tokens"),
    ((20,), np.float32, "features"),
    ((), np.float32, "features"),
    ((2, 3, 8, 8), np.float32, "other"),
])
def test_input_kind_tells_sequences_from_images(shape, dtype, kind):
    from danlu.checks.audit.inputs import input_kind

    assert input_kind(shape, np.dtype(dtype)) == kind
