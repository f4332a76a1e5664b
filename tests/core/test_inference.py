"""Engine.evaluate and Engine.predict on arrays; class names stored inside every format."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from finetunekit.core.inference import expected_calibration_error, score
from finetunekit.core.model_info import read_model_info
from finetunekit.core.run_folder import class_names_of
from finetunekit.testing import tiny_data, tiny_recipe

NAMES = ["ant", "bee", "cow"]


def test_score_is_scikit_learns():
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [.5, .1, .4], [.3, .3, .4], [.6, .3, .1]])
    m = score(y, p, NAMES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["loss"] == pytest.approx(sk.log_loss(y, p))
    assert m["top_k_accuracy"] == {"2": pytest.approx(sk.top_k_accuracy_score(y, p, k=2))}
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert m["per_class"]["bee"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                     "support": 2}
    assert m["macro_avg"]["f1"] == pytest.approx(sk.f1_score(y, p.argmax(1), average="macro"))
    assert "roc_auc" not in m  # binary heads only


def test_binary_scores_have_roc_auc():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([.1, .6, .4, .9])
    m = score(y, np.stack([1 - p1, p1], axis=1), ["no", "yes"])
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p1))
    assert m["top_k_accuracy"] == {}  # no k < 2 classes besides top-1


def test_expected_calibration_error():
    right = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 9 + [1])  # 90% confident, 90% right: calibrated
    assert expected_calibration_error(labels, right) == pytest.approx(0.0)
    assert expected_calibration_error(np.ones(10, int), right) == pytest.approx(0.9)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from finetunekit import Engine

    engine = Engine(entry_points=False)
    folder = tmp_path_factory.mktemp("models")
    run = engine.build(tiny_recipe(classes=3))
    run.class_names = NAMES
    (folder / "recipe.toml").write_text(run.recipe.to_toml())
    return engine, run, folder


@pytest.mark.parametrize("fmt", ["keras", "h5", "weights", "checkpoint",
                                 pytest.param("savedmodel", marks=pytest.mark.slow)])
def test_class_names_travel_inside_the_model(built, fmt):
    engine, run, folder = built
    suffix = engine.catalogue.get("format", fmt).suffix
    path = engine.save_model(run.model, folder / f"model{suffix}", fmt, run=run)
    assert read_model_info(path) == {"class_names": NAMES}
    assert class_names_of(path) == NAMES
    data = tiny_data(6, classes=3)
    evaluation = engine.evaluate(path, data.train)
    assert evaluation.class_names == NAMES
    expected = run.model.predict(data.train[0], verbose=0)
    np.testing.assert_allclose(evaluation.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert evaluation.metrics["images"] == 6


def test_predict_names_classes_and_averages_the_flip(built):
    engine, run, folder = built
    path = engine.save_model(run.model, folder / "predict.keras", "keras", run=run)
    x = tiny_data(3, classes=3).train[0]
    plain = engine.predict(path, x)
    flipped = engine.predict(path, x[:, :, ::-1])
    both = engine.predict(path, x, tta=True)
    np.testing.assert_allclose(both.probabilities, (plain.probabilities + flipped.probabilities) / 2,
                               rtol=1e-5, atol=1e-6)
    top = plain.top_k(2)
    assert len(top) == 3 and all(len(row) == 2 and row[0][0] in NAMES for row in top)
    assert top[0][0][1] >= top[0][1][1]


def test_evaluate_matches_data_classes_by_name(built):
    from finetunekit import Data

    engine, run, folder = built
    path = engine.save_model(run.model, folder / "names.keras", "keras", run=run)
    x = tiny_data(4, classes=3).train[0]
    # the data knows two of the classes, in its own order: 'cow' is its label 0
    data = Data(train=(x, np.array([0, 1, 0, 1])), class_names=["cow", "ant"])
    assert engine.evaluate(path, data).labels.tolist() == [2, 0, 2, 0]
    with pytest.raises(Exception, match="not trained on"):
        engine.evaluate(path, Data(train=(x, np.zeros(4, int)), class_names=["yak", "ant"]))
