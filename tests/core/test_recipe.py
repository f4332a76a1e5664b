"""Recipes: every key validated, named in errors; TOML and dict give the same recipe."""

from __future__ import annotations

import pytest

from finetunekit import Recipe, RecipeError


def _base(**sections):
    data = {"backbone": {"name": "vgg16", "weights": "none"}, "head": {"classes": 1}}
    data.update(sections)
    return data


def test_toml_and_dict_agree_and_defaults_are_filled(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[backbone]\nname = "vgg16"\nweights = "none"\n[head]\nclasses = 1\n')
    from_toml = Recipe.from_toml(path)
    assert from_toml == Recipe.from_dict(_base())
    assert from_toml["strategy"] == {"name": "feature_extraction", "train_bn": False}
    assert from_toml["train"]["epochs"] == 10
    assert from_toml.source == str(path)


def test_to_toml_round_trips():
    recipe = Recipe.from_dict(_base(strategy={"name": "partial", "unfreeze_from": "block5_conv1"},
                                    optimizer={"learning_rate": 2e-5}))
    assert Recipe.from_string(recipe.to_toml()) == recipe


@pytest.mark.parametrize("data, fragment", [
    ({"backbone": {"weights": "none"}}, "'backbone.name' is required"),
    (_base(trian={}), "Did you mean 'train'?"),
    (_base(train={"epochs": "ten"}), "'train.epochs' must be an integer. Received: train.epochs='ten'"),
    (_base(train={"epochs": -1}), "'train.epochs' must be >= 0"),
    (_base(train={"epochs": True}), "'train.epochs' must be an integer"),
    (_base(optimizer={"learning_rate": "fast"}), "optimizer.learning_rate"),
    (_base(optimizer={"schedule": "cosin"}), "Did you mean 'cosine'?"),
    (_base(data={"batch_size": 0}), "'data.batch_size' must be >= 1"),
    (_base(backbone={"name": "vgg16", "input_shape": [32, 32, 1]}), "3 channels"),
    (_base(save="runs"), "[save] must be a table"),
])
def test_bad_values_name_the_key(data, fragment):
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data)
    assert fragment in str(info.value)


def test_component_keys_are_checked_against_the_selected_component(engine):
    recipe = Recipe.from_dict(_base(strategy={"name": "partial", "unfreez_blocks": 1}))
    with pytest.raises(RecipeError) as info:
        engine.validate(recipe)
    message = str(info.value)
    assert "Unknown key 'strategy.unfreez_blocks' for strategy 'partial'" in message
    assert "Did you mean 'unfreeze_blocks'?" in message
    assert "unfreeze_from" in message and "train_bn" in message


def test_head_keys_and_ranges(engine):
    with pytest.raises(RecipeError, match="head.pooling"):
        engine.validate(Recipe.from_dict(_base(head={"classes": 1, "pooling": "mean"})))
    with pytest.raises(RecipeError, match=r"head.dropout.*<= 0.95"):
        engine.validate(Recipe.from_dict(_base(head={"classes": 1, "dropout": 1.5})))
    with pytest.raises(RecipeError, match="head.hidden"):
        engine.validate(Recipe.from_dict(_base(head={"classes": 1, "hidden": [256, 0]})))


def test_data_keys_are_checked_when_data_comes_from_the_recipe(engine):
    recipe = Recipe.from_dict(_base(data={"source": "folder"}))
    engine.validate(recipe, data=False)
    with pytest.raises(RecipeError, match=r"'data.train' is required"):
        engine.validate(recipe)


def test_overrides_parse_toml_values_and_plain_strings():
    recipe = Recipe.from_dict(_base()).with_overrides([
        "strategy.name=partial", "strategy.unfreeze_from=15", "head.hidden=[256]",
        "optimizer.learning_rate=2e-5", "strategy.train_bn=true"])
    assert recipe["strategy"] == {"name": "partial", "unfreeze_from": 15, "train_bn": True}
    assert recipe["head"]["hidden"] == [256]
    assert recipe["optimizer"]["learning_rate"] == 2e-5
    with pytest.raises(RecipeError, match="Unknown recipe section"):
        Recipe.from_dict(_base()).with_overrides(["stratgy.name=full"])


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "epoch", 50, "Unknown key 'train.epoch'. Known: distribution, early_stopping, epochs, "),
    ("optimizer", "learning_rate", float("nan"), "'optimizer.learning_rate' must be a finite number"),
    ("optimizer", "learning_rate", float("inf"), "'optimizer.learning_rate' must be a finite number"),
    ("train", "seed", 2**32, "'train.seed' must be <= 4294967295"),
])
def test_keys_without_a_component_and_non_finite_or_out_of_range_values_are_refused(
        section, key, value, message):
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict({"backbone": {"name": "vgg16"}, section: {key: value}})
    assert message in str(info.value)
    if key == "epoch":
        assert "Did you mean 'epochs'?" in str(info.value)


def test_list_types_read_naturally():
    from finetunekit import Param

    assert Param(list, [], items=str).describe_type() == "a list of strings"
    assert Param(list, [1, 1], items=int, length=2).describe_type() == "a list of integers of length 2"


def test_early_stopping_is_a_sub_table_with_its_own_keys_and_defaults():
    recipe = Recipe.from_string('[backbone]\nname = "vgg16"\n[train.early_stopping]\npatience = 2\n')
    assert recipe["train"]["early_stopping"] == {
        "monitor": "val_loss", "patience": 2, "min_delta": 0.0, "mode": "auto",
        "restore_best": False}
    assert Recipe.from_string(recipe.to_toml()) == recipe
    assert Recipe.from_dict(_base())["train"]["early_stopping"] is None
    with pytest.raises(RecipeError, match="Unknown key 'train.early_stopping.patiense'.*"
                                          "Did you mean 'patience'"):
        recipe.with_overrides({"train.early_stopping": {"patiense": 2}})
    with pytest.raises(RecipeError, match="Unknown value for 'train.early_stopping.mode' 'low'"):
        recipe.with_overrides({"train.early_stopping": {"mode": "low"}})
