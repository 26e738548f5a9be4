"""Tests of ``audit.data``: every format built in tmp_path, every bad input a one-line InputError."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.config import DataSpec
from audit.data import AuditDataset, detect_format, file_sha256, load_dataset
from audit.errors import InputError


def load(path: Path, name: str = "eval", *, class_names: list[str] | None = None, seed: int = 0, **spec: Any) -> AuditDataset:
    return load_dataset(DataSpec(path=path, **spec), name, class_names=class_names, seed=seed)


def fails(path: Path, match: str, *, name: str = "eval", class_names: list[str] | None = None, **spec: Any) -> str:
    """Loading raises an InputError: one line, starting with data.<name>:, matching ``match``."""
    with pytest.raises(InputError, match=match) as info:
        load(path, name, class_names=class_names, **spec)
    message = str(info.value)
    assert message.startswith(f"data.{name}: ")
    assert "\n" not in message
    return message


def write_png(path: Path, mode: str, size: tuple[int, int], value: int | tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def save_hf(data: Any, path: Path) -> Path:
    data.save_to_disk(str(path))
    return path


# ------------------------------------------------------------------------------------------ npz


def test_npz_images_targets_and_sensitive_features(tmp_path: Path) -> None:
    x = np.arange(5 * 2 * 3 * 3, dtype=np.float64).reshape(5, 2, 3, 3) / 100
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.array([0, 2, 1, 2, 0]), sex=np.array(["f", "m", "f", "m", "f"]), age=np.arange(5))
    ds = load(path, sensitive_features=["sex", "age"])
    assert isinstance(ds, AuditDataset) and len(ds) == 5
    assert ds.inputs.dtype == np.float32 and ds.inputs.shape == (5, 2, 3, 3)
    np.testing.assert_array_equal(ds.inputs, x.astype(np.float32))
    assert ds.target.dtype == np.int64 and ds.target.tolist() == [0, 2, 1, 2, 0]
    assert ds.class_names is None and ds.feature_names is None and ds.indices is None
    assert ds.input_kind == "image" and ds.format == "npz" and ds.name == "eval" and ds.path == str(path)
    assert list(ds.sensitive_features.columns) == ["sex", "age"]
    assert ds.sensitive_features["sex"].tolist() == ["f", "m", "f", "m", "f"]
    assert ds.sensitive_features.index.tolist() == [0, 1, 2, 3, 4]
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("x", "kind", "dtype"),
    [
        (np.ones((4, 3), dtype=np.float64), "tabular", np.float32),
        (np.ones((4, 3), dtype=np.bool_), "tabular", np.float32),
        (np.ones((4, 6), dtype=np.int32), "sequence", np.int64),
        (np.ones((4, 6, 2), dtype=np.float32), "sequence", np.float32),
        (np.ones((4, 1, 2, 2), dtype=np.uint8), "image", np.float32),
        (np.ones((4, 1, 2, 2, 2), dtype=np.float32), None, np.float32),
    ],
)
def test_npz_input_kind_from_shape_and_dtype(tmp_path: Path, x: np.ndarray, kind: str | None, dtype: type) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=x)
    ds = load(path, target=None)
    assert ds.input_kind == kind and ds.inputs.dtype == dtype and ds.inputs.shape == x.shape
    assert ds.target is None and ds.sensitive_features is None


def test_npz_custom_array_names_and_one_column_target(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, inputs=np.zeros((3, 2)), labels=np.array([[1.0], [0.0], [1.0]]))
    ds = load(path, features="inputs", target="labels")
    assert ds.inputs.shape == (3, 2) and ds.target.tolist() == [1, 0, 1] and ds.target.dtype == np.int64


def test_npz_1d_strings_are_text(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array(["good film", "bad film"]), y=np.array([1, 0]))
    ds = load(path)
    assert ds.inputs == ["good film", "bad film"] and ds.input_kind == "text"


def test_string_labels_define_sorted_class_names(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 2)), y=np.array(["dog", "cat", "dog", "bird"]))
    ds = load(path)
    assert ds.class_names == ["bird", "cat", "dog"] and ds.target.tolist() == [2, 1, 2, 0]


def test_string_labels_map_to_model_class_names(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array(["dog", "cat", "dog"]))
    ds = load(path, class_names=["dog", "bird", "cat"])
    assert ds.class_names == ["dog", "bird", "cat"] and ds.target.tolist() == [0, 2, 0]


def test_integral_float_labels_are_indices(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array([2.0, 0.0, 1.0]))
    ds = load(path, class_names=["a", "b", "c"])
    assert ds.target.tolist() == [2, 0, 1] and ds.target.dtype == np.int64 and ds.class_names is None


# ------------------------------------------------------------------------------------ csv/parquet


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "f1": [1, 2, 3, 4],
            "f2": [0.5, 0.25, 0.0, -1.0],
            "label": ["yes", "no", "yes", "yes"],
            "sex": ["f", "m", "m", "f"],
            "review": ["great", "poor", "fine", "ok"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_tables_default_features(tmp_path: Path, frame: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    frame.drop(columns="review").to_csv(path, index=False) if suffix == ".csv" else frame.drop(columns="review").to_parquet(path)
    ds = load(path, target="label", sensitive_features=["sex"])
    assert ds.format == ("csv" if suffix == ".csv" else "parquet")
    assert ds.feature_names == ["f1", "f2"] and ds.input_kind == "tabular"
    assert ds.inputs.dtype == np.float32
    np.testing.assert_array_equal(ds.inputs, np.array([[1, 0.5], [2, 0.25], [3, 0], [4, -1]], dtype=np.float32))
    assert ds.class_names == ["no", "yes"] and ds.target.tolist() == [1, 0, 1, 1]
    assert ds.sensitive_features["sex"].tolist() == ["f", "m", "m", "f"]


def test_csv_listed_features_in_given_order(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    ds = load(path, target="label", features=["f2", "f1"])
    assert ds.feature_names == ["f2", "f1"] and ds.inputs[:, 1].tolist() == [1, 2, 3, 4]
    assert ds.sensitive_features is None


def test_csv_text_column(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    ds = load(path, target="label", text_column="review", sensitive_features=["sex"], class_names=["no", "yes"])
    assert ds.inputs == ["great", "poor", "fine", "ok"] and ds.input_kind == "text"
    assert ds.feature_names is None and ds.target.tolist() == [1, 0, 1, 1]


def test_parquet_categorical_labels(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "t.parquet"
    frame.assign(label=frame["label"].astype("category")).drop(columns=["review", "sex"]).to_parquet(path)
    ds = load(path, target="label")
    assert ds.class_names == ["no", "yes"] and ds.target.tolist() == [1, 0, 1, 1]


# ---------------------------------------------------------------------------------- image folder


def test_image_folder_rgb(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "cat" / "a.png", "RGB", (3, 2), (255, 0, 51))
    write_png(root / "cat" / "b.PNG", "RGB", (3, 2), (0, 0, 0))
    write_png(root / "dog" / "c.png", "RGB", (3, 2), (102, 255, 0))
    (root / "dog" / "notes.txt").write_text("not an image")
    ds = load(root)
    assert ds.format == "image_folder" and ds.input_kind == "image"
    assert ds.inputs.dtype == np.float32 and ds.inputs.shape == (3, 3, 2, 3)
    np.testing.assert_allclose(ds.inputs[0, :, 0, 0], [1.0, 0.0, 0.2], rtol=1e-6)
    np.testing.assert_allclose(ds.inputs[2, :, 1, 2], [0.4, 1.0, 0.0], rtol=1e-6)
    assert ds.class_names == ["cat", "dog"] and ds.target.tolist() == [0, 0, 1]
    assert ds.sensitive_features is None and ds.feature_names is None


def test_image_folder_grayscale_and_forced_rgb(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "0" / "a.png", "L", (2, 2), 255)
    write_png(root / "1" / "b.png", "L", (2, 2), 51)
    ds = load(root)
    assert ds.inputs.shape == (2, 1, 2, 2)
    np.testing.assert_allclose(ds.inputs[:, 0, 0, 0], [1.0, 0.2], rtol=1e-6)
    rgb = load(root, image_mode="RGB")
    assert rgb.inputs.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(rgb.inputs[1, :, 0, 0], [0.2, 0.2, 0.2], rtol=1e-6)


def test_image_folder_mixed_modes_become_rgb(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a" / "1.png", "L", (2, 2), 0)
    write_png(root / "b" / "2.png", "RGB", (2, 2), (0, 0, 0))
    assert load(root).inputs.shape == (2, 3, 2, 2)


def test_image_folder_16_bit_grayscale_keeps_its_range(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.array([[0, 13107, 65535]], dtype=np.uint16)).save(root / "a" / "deep.png")
    write_png(root / "b" / "flat.png", "L", (3, 1), 51)
    ds = load(root)
    assert ds.inputs.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(ds.inputs[:, 0, 0], [[0, 0.2, 1], [0.2, 0.2, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(load(root, image_mode="RGB").inputs[0, :, 0, 1], [0.2, 0.2, 0.2], rtol=1e-6)


def test_image_folder_resizes_to_image_size(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a" / "1.png", "L", (4, 4), 128)
    write_png(root / "b" / "2.png", "L", (6, 2), 128)
    ds = load(root, image_size=(3, 5))
    assert ds.inputs.shape == (2, 1, 3, 5)
    np.testing.assert_allclose(ds.inputs, 128 / 255, rtol=1e-6)


def test_image_folder_differing_sizes_need_image_size(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a" / "1.png", "L", (4, 4), 0)
    write_png(root / "b" / "2.png", "L", (6, 2), 0)
    fails(root, r"images differ in size .*Set data\.eval\.image_size")


def test_image_folder_maps_generic_model_class_names(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "2" / "a.png", "L", (2, 2), 0)
    write_png(root / "0" / "b.png", "L", (2, 2), 0)
    ds = load(root, class_names=[str(i) for i in range(10)])
    assert ds.target.tolist() == [0, 2] and ds.class_names == [str(i) for i in range(10)]


def test_image_folder_empty_class_keeps_its_index(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a" / "1.png", "L", (2, 2), 0)
    (root / "b").mkdir()
    write_png(root / "c" / "1.png", "L", (2, 2), 0)
    ds = load(root)
    assert ds.class_names == ["a", "b", "c"] and ds.target.tolist() == [0, 2]


def test_image_folder_unknown_class(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "cat" / "a.png", "L", (2, 2), 0)
    fails(root, r"labels \['cat'\] in subfolder names are not among the model's classes \['0', '1'\]", class_names=["0", "1"])


def test_image_folder_unreadable_image(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a" / "ok.png", "L", (2, 2), 0)
    (root / "a" / "broken.png").write_bytes(b"not a png at all")
    fails(root, r"image a/broken\.png cannot be read")


def test_image_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    fails(tmp_path / "imgs", "no images", format="image_folder")


# ------------------------------------------------------------------------------------ HF datasets


def test_hf_dataset_images_and_sensitive_features(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (3, 2), (51 * i, 0, 255)) for i in range(3)]
    data = datasets.Dataset.from_dict({"img": images, "label": [1, 0, 1], "group": ["a", "b", "a"]})
    path = save_hf(data, tmp_path / "hf")
    ds = load(path, target="label", sensitive_features=["group"])
    assert ds.format == "hf_dataset" and ds.input_kind == "image"
    assert ds.inputs.shape == (3, 3, 2, 3) and ds.inputs.dtype == np.float32
    np.testing.assert_allclose(ds.inputs[:, :, 0, 0], [[0, 0, 1], [0.2, 0, 1], [0.4, 0, 1]], rtol=1e-6)
    assert ds.target.tolist() == [1, 0, 1] and ds.class_names is None
    assert ds.sensitive_features["group"].tolist() == ["a", "b", "a"]


@pytest.fixture
def hf_dict(tmp_path: Path) -> Path:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "ids": datasets.List(datasets.Value("int32")),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
        }
    )
    train = datasets.Dataset.from_dict({"text": ["a", "b"], "ids": [[1, 2], [3, 4]], "label": [0, 1]}, features=features)
    test = datasets.Dataset.from_dict({"text": ["c", "d", "e"], "ids": [[5, 6], [7, 8], [9, 10]], "label": [1, 1, 0]}, features=features)
    return save_hf(datasets.DatasetDict(train=train, test=test), tmp_path / "hf")


def test_hf_dataset_dict_class_label_and_default_test_split(hf_dict: Path) -> None:
    ds = load(hf_dict, target="label")
    assert ds.inputs == ["c", "d", "e"] and ds.input_kind == "text"
    assert ds.class_names == ["neg", "pos"] and ds.target.tolist() == [1, 1, 0]


def test_hf_dataset_split_and_token_ids(hf_dict: Path) -> None:
    ds = load(hf_dict, target="label", split="train", features="ids")
    assert ds.input_kind == "sequence" and ds.inputs.dtype == np.int64
    np.testing.assert_array_equal(ds.inputs, [[1, 2], [3, 4]])
    assert ds.target.tolist() == [0, 1]


def test_hf_class_label_follows_model_class_order(hf_dict: Path) -> None:
    ds = load(hf_dict, target="label", class_names=["pos", "neg"])
    assert ds.class_names == ["pos", "neg"] and ds.target.tolist() == [0, 0, 1]


def test_hf_missing_split(hf_dict: Path) -> None:
    fails(hf_dict, r"no split 'tset'.*Did you mean 'test'\? Fix data\.eval\.split", split="tset")


def test_hf_several_splits_without_test(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    part = datasets.Dataset.from_dict({"x": [[0.0, 1.0]], "y": [0]})
    path = save_hf(datasets.DatasetDict(train=part, valid=part), tmp_path / "hf")
    fails(path, r"splits \['train', 'valid'\].*data\.eval\.split")
    assert load(path, split="valid").input_kind == "tabular"


def test_hf_missing_labels(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"x": datasets.List(datasets.Value("float32")), "y": datasets.ClassLabel(names=["a", "b"])})
    data = datasets.Dataset.from_dict({"x": [[0.0], [1.0]], "y": [0, -1]}, features=features)
    fails(save_hf(data, tmp_path / "hf"), r"missing labels in 1 row\(s\) \(first: row 1")


def test_hf_no_input_column(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    path = save_hf(datasets.Dataset.from_dict({"a": [1], "y": [0]}), tmp_path / "hf")
    fails(path, r"no input column .*Set data\.eval\.features")


# ------------------------------------------------------------------------------- detect_format


@pytest.mark.parametrize(("name", "fmt"), [("a.npz", "npz"), ("a.CSV", "csv"), ("a.parquet", "parquet"), ("a.pq", "parquet")])
def test_detect_format_files(tmp_path: Path, name: str, fmt: str) -> None:
    assert detect_format(tmp_path / name) == fmt


def test_detect_format_folders(tmp_path: Path, hf_dict: Path) -> None:
    assert detect_format(hf_dict) == "hf_dataset"
    write_png(tmp_path / "imgs" / "a" / "1.jpg", "RGB", (2, 2), (0, 0, 0))
    assert detect_format(tmp_path / "imgs") == "image_folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a saved Hugging Face dataset nor an image folder"):
        detect_format(tmp_path / "empty")


# ------------------------------------------------------------------------------------ bad inputs


def test_missing_path(tmp_path: Path) -> None:
    fails(tmp_path / "nope.npz", r"nope\.npz does not exist", name="reference")


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("1,2\n")
    fails(path, r"unsupported data format '\.txt'; supported: \.npz, \.npy, \.csv")


def test_format_needs_folder(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a\n1\n")
    fails(path, "format image_folder needs a folder", format="image_folder")


def test_corrupt_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(b"\x00garbage")
    fails(path, r"not a valid \.npz file")


def test_pickled_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    fails(path, "holds pickled objects.*plain numeric arrays")


def test_corrupt_csv(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n\xff\xfe\xfa,1\n")
    fails(path, "cannot be read as CSV")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    fails(path, "cannot be read as PARQUET")


def test_missing_npz_array_suggests_closest(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 2)), label=np.zeros(2))
    fails(path, r"no array 'labl'; found \['x', 'label'\]\. Did you mean 'label'\? Fix data\.eval\.target\.", target="labl")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"target": "lable"}, r"no column 'lable'.*Did you mean 'label'\? Fix data\.eval\.target"),
        ({"target": "label", "sensitive_features": ["sx"]}, r"no column 'sx'.*Fix data\.eval\.sensitive_features"),
        ({"target": "label", "features": ["f1", "ff2"]}, r"no column 'ff2'.*Did you mean 'f2'\? Fix data\.eval\.features"),
        ({"target": "label", "text_column": "reviews"}, r"no column 'reviews'.*Did you mean 'review'\? Fix data\.eval\.text_column"),
    ],
)
def test_missing_columns(tmp_path: Path, frame: pd.DataFrame, spec: dict[str, Any], match: str) -> None:
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    fails(path, match, **spec)


def test_non_numeric_feature_column(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    fails(path, r"feature column 'sex' is not numeric.*List it in data\.eval\.sensitive_features", target="label")


def test_labels_not_among_model_classes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"f": [1, 2], "y": ["cat", "0"]}).to_csv(path, index=False)
    message = fails(path, r"labels \['cat'\] in target column 'y' are not among the model's classes", class_names=[str(i) for i in range(12)])
    assert "['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ...]" in message
    assert message.endswith("Fix the target column 'y' or set model.class_names.")


def test_empty_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("f,y\n")
    fails(path, "holds 0 samples")
    path.write_text("")
    fails(path, "is empty")


def test_empty_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((0, 3)), y=np.zeros(0))
    fails(path, "holds 0 samples")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs(tmp_path: Path, bad: float) -> None:
    x = np.zeros((5, 2), dtype=np.float32)
    x[3, 1] = bad
    x[4, 0] = bad
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.zeros(5, dtype=int))
    fails(path, r"inputs hold NaN or inf in 2 row\(s\) \(first: row 3")


def test_nan_in_csv_features(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("f,y\n1,0\n,1\n")
    fails(path, r"NaN or inf in 1 row\(s\) \(first: row 1")


def test_missing_labels(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("f,y\n1,0\n2,\n3,1\n")
    fails(path, r"target column 'y' has missing labels in 1 row\(s\) \(first: row 1.*target: null")


@pytest.mark.parametrize(("labels", "shown"), [([0, -1, 1], "-1"), ([0.0, 1.5, 1.0], "1.5")])
def test_invalid_numeric_labels(tmp_path: Path, labels: list[float], shown: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array(labels))
    fails(path, rf"array 'y' holds {shown} in 1 row\(s\) \(first: row 1.*class indices")


def test_label_beyond_model_classes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0, 1, 2]))
    fails(path, r"holds label 2 but the model has 2 classes \['a', 'b'\]", class_names=["a", "b"])


def test_sensitive_length_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(3, dtype=int), sex=np.array(["f", "m"]))
    fails(path, r"sensitive feature array 'sex' has 2 entries but inputs 'x' have 3 samples", sensitive_features=["sex"])


def test_npz_input_needs_two_dims(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros(3), y=np.zeros(3, dtype=int))
    fails(path, r"array 'x' has shape \(3,\); inputs need at least 2 dimensions")


def test_missing_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,y\nhello,0\n,1\n")
    fails(path, r"text column 't' has missing values in 1 row\(s\)", text_column="t")


# ----------------------------------------------------------------------------------- max_samples


def test_max_samples_is_seeded_sorted_and_consistent(tmp_path: Path) -> None:
    n = 50
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(n * 2, dtype=np.float32).reshape(n, 2), y=np.arange(n) % 3, g=np.arange(n))
    a = load(path, max_samples=10, sensitive_features=["g"], seed=1)
    b = load(path, max_samples=10, sensitive_features=["g"], seed=1)
    c = load(path, max_samples=10, sensitive_features=["g"], seed=2)
    assert a.indices.dtype == np.int64 and len(a) == 10
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert a.indices.tolist() == sorted(a.indices.tolist()) and len(set(a.indices.tolist())) == 10
    np.testing.assert_array_equal(a.inputs[:, 0], a.indices * 2)
    np.testing.assert_array_equal(a.target, a.indices % 3)
    assert a.sensitive_features["g"].tolist() == a.indices.tolist()
    assert a.sensitive_features.index.tolist() == list(range(10))
    assert load(path, max_samples=n).indices is None


def test_max_samples_on_images_and_text(tmp_path: Path, frame: pd.DataFrame) -> None:
    root = tmp_path / "imgs"
    for i in range(6):
        write_png(root / f"c{i % 2}" / f"{i}.png", "L", (2, 2), i * 40)
    ds = load(root, max_samples=3, seed=5)
    full = load(root)
    np.testing.assert_array_equal(ds.inputs, full.inputs[ds.indices])
    np.testing.assert_array_equal(ds.target, full.target[ds.indices])
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    text = load(path, target="label", text_column="review", max_samples=2, seed=3)
    assert text.inputs == [frame["review"][i] for i in text.indices]


# ----------------------------------------------------------------------------------------- sha256


def test_file_sha256_stable_and_sensitive_to_changes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("f,y\n1,0\n")
    first = file_sha256(path)
    assert first == file_sha256(path) == hashlib.sha256(b"f,y\n1,0\n").hexdigest()
    path.write_text("f,y\n1,1\n")
    assert file_sha256(path) != first


def test_folder_sha256_covers_contents_and_names(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a" / "1.png", "L", (2, 2), 0)
    write_png(root / "b" / "2.png", "L", (2, 2), 9)
    first = file_sha256(root)
    assert first == load(root).sha256 == file_sha256(root)
    (root / "b" / "2.png").rename(root / "b" / "3.png")
    renamed = file_sha256(root)
    assert renamed != first
    write_png(root / "b" / "3.png", "L", (2, 2), 10)
    assert file_sha256(root) not in (first, renamed)


def test_loading_is_read_only(hf_dict: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in hf_dict.rglob("*")}
    digest = file_sha256(hf_dict)
    load(hf_dict, target="label", max_samples=2)
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in hf_dict.rglob("*")} == before
    assert file_sha256(hf_dict) == digest
