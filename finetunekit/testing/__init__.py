"""Test helpers for finetunekit and its plugins: tiny recipes, weight snapshots, and
conformance checks that prove a strategy, a backbone or a data source keeps its contract.

Third-party authors test their components the way the built-ins are tested::

    from finetunekit.testing import check_backbone, check_data_source, check_strategy

    def test_my_strategy():
        check_strategy("my_strategy", {"n": 2}, plugins=[my_plugin])

    def test_my_backbone():
        check_backbone("my_backbone", plugins=[my_plugin])

    def test_my_data_source(tmp_path):
        check_data_source("my_source", {"path": str(tmp_path)}, plugins=[my_plugin])

Everything here uses small inputs (32x32, or the backbone's minimum) and random weights,
so it runs in seconds on a CPU.
"""

from finetunekit.testing.backbone import BackboneReport, check_backbone
from finetunekit.testing.data_source import check_data_source
from finetunekit.testing.strategy import (
    EXACT_EPSILON,
    StepReport,
    check_strategy,
    expected_to_change,
    expected_variables,
    step_each_stage,
    wrong_rates,
)
from finetunekit.testing.tiny import (
    SIZE,
    changed_layers,
    snapshot,
    snapshot_variables,
    tiny_data,
    tiny_recipe,
)

__all__ = [
    "EXACT_EPSILON", "SIZE", "BackboneReport", "StepReport", "changed_layers", "check_backbone",
    "check_data_source", "check_strategy", "expected_to_change", "expected_variables",
    "snapshot", "snapshot_variables", "step_each_stage", "tiny_data", "tiny_recipe",
    "wrong_rates",
]
