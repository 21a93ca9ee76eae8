"""One Loihi design-rules module (issue 16): the mapper's violations, the placer's fit test and the validation
of a compile folder read back use the same per-core limits, all read from the target file."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from snnc.backends.loihi import rules
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.validate import ConfigError, check_program
from snnc.frontends import trace
from snnc.passes import PassContext, Pipeline
from snnc.targets import load_target

from conftest import TinySNN

TARGET = load_target("loihi-sim")


def test_core_limits_are_the_target_files():
    lim = TARGET["core"]
    assert {k for _, k, _ in rules.CORE_LIMITS} == {"neurons", "axons_in", "axons_out", "synapse_memory_bits"}
    assert rules.core_fits(lim, neurons=lim["neurons"], axons_in=lim["axons_in"])
    assert not rules.core_fits(lim, neurons=lim["neurons"] + 1)
    ok = rules.core_fits(lim, neurons=np.array([1, lim["neurons"] + 1]), axons_in=np.array([lim["axons_in"] + 1, 0]))
    assert ok.tolist() == [False, False]


def test_mapper_and_readback_validation_agree_on_a_core_over_its_limit():
    torch.manual_seed(0)
    g = Pipeline("fold_bn,quantize").run(trace(TinySNN(channels=32), (1, 8, 8), num_steps=4),
                                         PassContext(target=TARGET, num_steps=4))
    config, arrays, v = compile_graph(g, TARGET, raise_on_violation=False)
    assert not v and len(config["cores"]) >= 2
    small = copy.deepcopy(TARGET)
    small["core"]["neurons"] = max(c["neurons"] for c in config["cores"]) - 1  # one core now holds too many
    broken = rules.design_rules(config["cores"], config["groups"], small["core"], small["fixed_point"], None, [],
                                None, small["chip"]["cores"])
    assert {x.rule for x in broken} == {"CORE_NEURONS"}
    with pytest.raises(ConfigError, match="neurons = .* is outside 0..%d" % small["core"]["neurons"]):
        check_program(config, arrays, small)
    check_program(config, arrays, small, core_limits=False)  # simulating a mapping that does not fit: allowed
    # the placer honours the same limits: compiled for the smaller core, every core is within it
    config2, _, v2 = compile_graph(g, small, raise_on_violation=False)
    assert not v2 and all(c["neurons"] <= small["core"]["neurons"] for c in config2["cores"])


def test_cores_per_chip_comes_from_the_target():
    torch.manual_seed(0)
    g = Pipeline("fold_bn,quantize").run(trace(TinySNN(channels=32), (1, 8, 8), num_steps=4),
                                         PassContext(target=TARGET, num_steps=4))
    config, _, _ = compile_graph(g, TARGET)
    two = copy.deepcopy(TARGET)
    two["chip"]["cores"] = 1
    with pytest.raises(rules.DesignRuleError, match=r"\[MAX_CHIPS\].*1 per chip"):
        compile_graph(g, two, max_chips=1)
    assert len(config["cores"]) >= 2
