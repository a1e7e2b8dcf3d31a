"""model.metadata's encoding (longtail.data.metadata), by hand on a tiny CSV: standardisation from the train
split only, one-hot with an unknown slot, missing values as configured, and the CSV that predict reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longtail.core.errors import ConfigError, DataError
from longtail.data.dataset import TensorImageDataset
from longtail.data.metadata import MetadataEncoding, MetadataTable, fit_encoding, fit_on_train, require_columns
from longtail.engine.batches import batches, iterate_batches

TRAIN = {"a": {"age": "20", "sex": "male", "site": "back"}, "b": {"age": "40", "sex": "female", "site": "face"},
         "c": {"age": "", "sex": "female", "site": "back"}, "d": {"age": "60", "sex": "NaN", "site": "back"}}


def _fit(missing="indicator", columns=("age", "sex", "site")):
    ids = list(TRAIN)
    return fit_encoding(list(columns), ids, [TRAIN[i] for i in ids], missing)


def test_numeric_columns_are_standardised_with_train_statistics_and_categories_are_one_hot():
    enc = _fit()
    age, sex, site = enc.columns
    assert (age.kind, sex.kind, site.kind) == ("numeric", "categorical", "categorical")
    assert age.mean == pytest.approx(40.0) and age.std == pytest.approx(np.std([20, 40, 60]))  # population std, missing left out
    assert sex.vocabulary == ["female", "male"] and site.vocabulary == ["back", "face"]  # 'NaN' is missing, not a category
    assert enc.slots() == ["age", "age:missing", "sex=female", "sex=male", "sex:unknown", "site=back", "site=face", "site:unknown"]
    assert enc.width == 8
    got = enc.encode(["a", "c", "d"], [TRAIN["a"], TRAIN["c"], TRAIN["d"]])
    z = (20 - 40) / np.std([20, 40, 60])
    np.testing.assert_allclose(got, [[z, 0, 0, 1, 0, 1, 0, 0],       # a: male, back
                                     [0, 1, 1, 0, 0, 1, 0, 0],       # c: age missing -> train mean (0) and the indicator
                                     [z * -1, 0, 0, 0, 1, 1, 0, 0]],  # d: sex missing -> the unknown slot
                               rtol=1e-6)


def test_statistics_come_from_the_train_rows_only():
    """Evaluation rows far from train change nothing: the encoding is fitted once, on what fit_on_train is given."""
    class Bundle:
        train = TensorImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), [0, 1], ["x", "y"], ids=["a", "b"])
        metadata = {**TRAIN, "z": {"age": "1000", "sex": "other", "site": "hand"}}  # z is a test image

    enc = fit_on_train(Bundle(), ["age", "sex"])  # type: ignore[arg-type]
    assert enc.columns[0].mean == pytest.approx(30.0) and enc.columns[0].std == pytest.approx(10.0)
    assert enc.columns[1].vocabulary == ["female", "male"]
    test = enc.encode(["z"], [Bundle.metadata["z"]])
    np.testing.assert_allclose(test, [[(1000 - 30) / 10, 0, 0, 0, 1]])  # an unseen category goes to the unknown slot


def test_an_image_without_a_row_is_missing_everywhere():
    enc = _fit()
    np.testing.assert_allclose(enc.encode(["new"], [None]), [[0, 1, 0, 0, 1, 0, 0, 1]])
    # HAM10000 and the ISIC exports write 'unknown' for an unrecorded value: missing, as an empty cell
    np.testing.assert_allclose(enc.encode(["u"], [{"age": "unknown", "sex": "Unknown", "site": "back"}]), [[0, 1, 0, 0, 1, 1, 0, 0]])


def test_missing_error_names_the_image_and_the_column():
    with pytest.raises(DataError, match=r"image 'c' has no value in metadata column 'age' \(the training split\)"):
        _fit("error")
    enc = _fit("error", columns=("site",))
    assert enc.slots() == ["site=back", "site=face", "site:unknown"] and enc.width == 3
    with pytest.raises(DataError, match="image 'q' has no value in metadata column 'site'.*metadata_missing: indicator"):
        enc.encode(["q"], [{"site": ""}])
    np.testing.assert_allclose(enc.encode(["q"], [{"site": "hand"}]), [[0, 0, 1]])  # unseen, not missing: the unknown slot


def test_error_mode_has_no_indicator_slot():
    ids = ["a", "b"]
    enc = fit_encoding(["age"], ids, [TRAIN[i] for i in ids], "error")
    assert enc.slots() == ["age"]
    np.testing.assert_allclose(enc.encode(["b"], [TRAIN["b"]]), [[1.0]])


def test_a_number_in_a_numeric_column_is_required_and_a_constant_column_divides_by_one():
    enc = _fit()
    with pytest.raises(DataError, match="image 'x': metadata column 'age' holds 'old', not a number"):
        enc.encode(["x"], [{"age": "old"}])
    const = fit_encoding(["k"], ["a", "b"], [{"k": "5"}, {"k": "5"}])
    assert const.columns[0].std == 1.0
    np.testing.assert_allclose(const.encode(["c"], [{"k": "7"}]), [[2.0, 0.0]])


def test_the_encoding_round_trips_through_json():
    enc = _fit()
    again = MetadataEncoding.from_json(enc.to_json())
    rows = [TRAIN[i] for i in TRAIN]
    np.testing.assert_array_equal(again.encode(list(TRAIN), rows), enc.encode(list(TRAIN), rows))
    broken = {**enc.to_json(), "width": 3}
    with pytest.raises(DataError, match="damaged"):
        MetadataEncoding.from_json(broken, "run/metadata_encoding.json")


def test_columns_are_checked_against_the_data():
    with pytest.raises(ConfigError, match="model.metadata: column 'sexx' is not in the data's metadata \\(did you mean 'sex'\\?\\)"):
        require_columns(["sexx"], TRAIN)
    with pytest.raises(ConfigError, match="this data source has no per-image metadata"):
        require_columns(["age"], None)
    with pytest.raises(DataError, match="metadata column 'age' has no value in the training split"):
        fit_encoding(["age"], ["c"], [TRAIN["c"]])


def test_a_split_with_metadata_yields_it_with_each_batch_and_subsets_keep_their_rows():
    images = torch.arange(5 * 4, dtype=torch.uint8).view(5, 1, 2, 2)
    ds = TensorImageDataset(images, [0, 1, 0, 1, 0], ["x", "y"])
    plain = list(iterate_batches(ds, [4, 0, 2], 2, 0, seed=0))
    ds.set_meta(torch.arange(10, dtype=torch.float32).view(5, 2))
    sub = ds.subset([4, 0, 2])
    assert torch.equal(sub.meta, torch.tensor([[8.0, 9.0], [0.0, 1.0], [4.0, 5.0]]))
    assert len(sub[0]) == 3 and torch.equal(sub[0][2], torch.tensor([8.0, 9.0]))
    for workers in (0, 1):  # the sliced fast path and the DataLoader path agree
        got = list(batches(ds, [4, 0, 2], 2, workers, seed=0))
        assert [b.meta.tolist() for b in got] == [[[8.0, 9.0], [0.0, 1.0]], [[4.0, 5.0]]]
        assert all(torch.equal(b.images, p[0]) for b, p in zip(got, plain))
    ds.set_meta(None)
    assert all(b.meta is None for b in batches(ds, [0, 1], 2, 0, seed=0)) and len(ds[0]) == 2


def test_the_predict_csv_is_keyed_by_file_name_or_stem(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("image_id,age,sex\nISIC_1,50,male\nsub/ISIC_2.jpg,,female\n")
    table = MetadataTable(f, ["age", "sex"])
    assert table.row(tmp_path / "imgs" / "ISIC_1.jpg")["age"] == "50"
    assert table.row("elsewhere/ISIC_2.jpg")["sex"] == "female"
    with pytest.raises(DataError, match=r"image 'x/ISIC_3.png' has no row in metadata CSV '.*m.csv' \(column 'image_id'"):
        table.row("x/ISIC_3.png")
    with pytest.raises(DataError, match="has no column 'localization', which this run's model takes .*add the column"):
        MetadataTable(f, ["age", "localization"])
    (tmp_path / "nokey.csv").write_text("name,age\nISIC_1,3\n")
    with pytest.raises(DataError, match="has no key column"):
        MetadataTable(tmp_path / "nokey.csv", ["age"])


def test_ham10000_age_sex_localization_encode_from_its_metadata_csv():
    """The real HAM10000 metadata (skipped where the archive is absent): no image is decoded."""
    from pathlib import Path

    from longtail.core.schema import DataConfig
    from longtail.data import build_data
    from longtail.data.metadata import attach_metadata

    archive = Path("/work/shared/data/ham10000_200x150.tar.gz")
    if not archive.is_file():
        pytest.skip(f"{archive} not available")
    cfg = DataConfig(source={"name": "ham10000", "root": str(archive)}, cache=False, normalize="none",
                     split={"val": 0.1, "test": 0.2, "group_by_source_groups": True})
    bundle = build_data(cfg, seed=0)
    enc = fit_on_train(bundle, ["age", "sex", "localization"])
    age, sex, site = enc.columns
    assert age.kind == "numeric" and 40 < age.mean < 60 and 10 < age.std < 25
    assert sex.vocabulary == ["female", "male"]  # HAM10000's 'unknown' sex is a missing value: the unknown slot
    assert "unknown" not in site.vocabulary and {"back", "face", "trunk"} <= set(site.vocabulary)
    attach_metadata(bundle, enc)
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.meta.shape == (len(split), enc.width)
        assert torch.all(split.meta[:, 2:].sum(1) == 2)  # one slot per categorical column, always
    assert float(bundle.train.meta[:, 1].sum()) > 0  # some train ages are missing: their indicator is set
