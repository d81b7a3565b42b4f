"""rmtlib.validation, and bad input to the experiment modules (stats, published, sweeps, diagnostics)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rmtlib import diagnostics, published, stats, sweeps
from rmtlib.models import MLP
from rmtlib.validation import (ArgumentTypeError, check_bool, check_choice, check_float, check_frame,
                               check_int, check_module, check_names, check_probability, check_str)


def test_argument_type_error_is_both_a_type_error_and_a_value_error():
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


@pytest.mark.parametrize("value", ["3", 3.0, True, None, [3], np.float64(3.0)])
def test_check_int_rejects_what_is_not_an_integer(value):
    with pytest.raises(ArgumentTypeError, match=r"epochs must be an integer >= 0, got"):
        check_int(value, "epochs", minimum=0)


def test_check_int_accepts_numpy_integers_and_checks_the_range():
    assert check_int(np.int64(4), "k", minimum=1, maximum=4) == 4 and type(check_int(np.int32(2), "k")) is int
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\], got 5"):
        check_int(5, "k", minimum=1, maximum=4)


@pytest.mark.parametrize("value", ["0.5", True, None, complex(1, 0)])
def test_check_float_rejects_non_numbers(value):
    with pytest.raises(ArgumentTypeError, match="lr must be"):
        check_float(value, "lr", low=0, low_open=True)


@pytest.mark.parametrize("value, match", [(0.0, r"lr must be a finite number > 0, got 0.0"),
                                          (math.nan, "got nan"), (math.inf, "got inf")])
def test_check_float_ranges_and_finiteness(value, match):
    with pytest.raises(ValueError, match=match):
        check_float(value, "lr", low=0, low_open=True)
    assert check_float(math.inf, "x", finite=False) == math.inf


def test_probability_bool_choice_str_names_module_frame():
    assert check_probability(1, "q") == 1.0
    with pytest.raises(ValueError, match=r"q must be a probability in \[0, 1\], got 1.5"):
        check_probability(1.5, "q")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        check_probability(0.0, "q", open_low=True, open_high=True)
    assert check_bool(np.bool_(True), "flag") is True
    with pytest.raises(ArgumentTypeError, match="flag must be True or False"):
        check_bool(1, "flag")
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="mode must be one of 'a', 'b'"):
        check_choice("c", "mode", ("a", "b"))
    with pytest.raises(ValueError):
        check_choice(1, "mode", ("1", "2"))  # a number never matches a string choice
    with pytest.raises(ArgumentTypeError):
        check_str(3, "name")
    with pytest.raises(ValueError, match="non-empty"):
        check_str("", "name")
    with pytest.raises(ArgumentTypeError, match="wrap it|list of strings"):
        check_names("abc", "layers")
    with pytest.raises(ArgumentTypeError, match="torch.nn.Module"):
        check_module("resnet18")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['b'\]"):
        check_frame(pd.DataFrame({"a": [1]}), ["a", "b"])


FRAME = pd.DataFrame({"recipe": ["a", "a", "b", "b"], "seed": [0, 0, 0, 0], "epoch": [0, 1, 0, 1],
                      "test_acc": [10.0, 90.0, 10.0, 91.0], "n_params": [5, 5, 3, 3]})
DATA = (torch.randn(20, 8), torch.randint(0, 3, (20,)))


@pytest.mark.parametrize("call", [
    lambda: stats.summary_stats("1 2 3"),
    lambda: stats.summary_stats(["a", "b"]),
    lambda: stats.epoch_summary(FRAME, metric=3),
    lambda: stats.epoch_summary("not a frame"),
    lambda: stats.final_rows(FRAME, epoch=1.0),
    lambda: stats.final_rows(FRAME, epoch=-1),
    lambda: stats.final_summary(FRAME, metrics="test_acc"),
    lambda: stats.paired_differences(FRAME, "a", 7),
    lambda: stats.paired_verdict("0.5"),
    lambda: stats.paired_verdict([0.5], digits=-1),
    lambda: stats.paired_verdict([math.nan]),
    lambda: stats.seed_record({0: "97"}),
    lambda: stats.seed_record([97.0]),
    lambda: stats.record_tree(FRAME, "test_acc", "recipe"),
    lambda: stats.curve_tree(FRAME, "test_acc", ["recipe"], pairs="yes"),
    lambda: stats.format_mean_sd("97", 1.0),
    lambda: stats.format_mean_sd(97.0, 1.0, digits=2.5),
    lambda: published.compare_value("acc", "98.3", [98.0]),
    lambda: published.compare_value("acc", 98.3, "98"),
    lambda: published.compare_value("acc", 98.3, [98.0, math.inf]),
    lambda: published.compare_value(3, 98.3, [98.0]),
    lambda: published.compare_value("acc", 98.3, [98.0], digits=True),
    lambda: published.compare_curve("acc {x}", "98", {0: [98.0]}),
    lambda: published.compare_curve("acc {x}", [98.0], [98.0]),
    lambda: published.comparison_table([]),
    lambda: published.comparison_table([{"x": 1}]),
    lambda: sweeps.truncation_curve("model", "0", [1], DATA),
    lambda: sweeps.truncation_curve(nn.Sequential(nn.Linear(8, 3)), "0", [9], DATA),
    lambda: sweeps.truncation_curve(nn.Sequential(nn.Linear(8, 3)), "nope", [1], DATA),
    lambda: sweeps.truncation_curve(nn.Sequential(nn.Linear(8, 3)), "0", [1], DATA, batch_size=0),
    lambda: sweeps.saturation_k(pd.DataFrame({"recipe": ["a"], "seed": [0], "k": [1], "test_acc": [1.0]}),
                                full_k=1, tolerance=-1),
    lambda: sweeps.saturation_k(pd.DataFrame({"recipe": ["a"], "seed": [0], "k": [1], "test_acc": [1.0]}),
                                full_k="1"),
    lambda: diagnostics.class_recall("model", DATA),
    lambda: diagnostics.class_recall(nn.Linear(8, 3), (DATA[0], DATA[1].float())),
    lambda: diagnostics.class_recall(nn.Linear(8, 3), (DATA[0] * math.nan, DATA[1])),
    lambda: diagnostics.class_recall(nn.Linear(8, 3), DATA[0]),
    lambda: diagnostics.output_activity(nn.Linear(8, 3), DATA[0]),
    lambda: diagnostics.output_activity(MLP([8, 3]), DATA[0], batch_size=0),
    lambda: diagnostics.lost_classes({("a", 0): MLP([8, 3])}, DATA, threshold=150),
])
def test_experiment_modules_reject_bad_input(call):
    with pytest.raises(ValueError):
        call()
