"""The time-per-step model and the SANA-FE-convention energy of backends/loihi/energy.py, on a hand-built
network whose every event is known, and the consistency of the new report fields."""
import json

import numpy as np
import pytest

from snnc.backends.loihi.energy import barrier_ns, measure, synapse_unit, tiles_used, time_model
from snnc.backends.loihi.sim import Program, slice_counts_for
from snnc.targets import load_target

TARGET = load_target("loihi-sim")
T = 4
L = T + 1


def _config():
    """g0 (2 neurons, core 0) -> g1 (3 neurons: 0-1 on core 1, 2 on core 2), dense, discrete axons.

    g0: vth = 1 << 6 = 64, dv = 0, bias 100 (neuron 0 fires every step) and 40 (neuron 1 fires at
    steps 1 and 3); g0's spike input is all zeros. g1 never fires (vThMant 131071); W = [[2, 0], [4, 0],
    [0, 6]]: g0 neuron 0 reaches core 1 (2 synapses), neuron 1 core 2 (1 synapse).
    """
    w1 = np.array([[2, 0], [4, 0], [0, 6]], np.int32)
    arrays = {"g0.bias_mant": np.array([100, 40], np.int32), "g0.p0.weight": np.array([[2], [2]], np.int32),
              "g1.bias_mant": np.zeros(3, np.int32), "g1.p0.weight": w1}

    def proj(src, shape, key, syn):
        return {"source": src, "source_shape": shape, "ops": [{"op": "dense", "node": key}], "weight_key": key,
                "weight_exp": 0, "delay": 0, "weight_bits": 8, "host": False, "recurrent": False, "synapses": syn,
                "format": "discrete", "axon_type": "discrete", "atoms": 1}

    groups = [
        {"name": "g0", "kind": "spiking", "shape": [2], "size": 2, "du": 4095, "dv": 0, "vth_mant": 1, "bias_exp": 0,
         "host_bias_exp": -1, "scale": 1.0, "reset": "zero", "offset": 0,
         "slices": [{"core": 0, "start": 0, "stop": 2}], "projections": [proj("input", [1], "g0.p0.weight", 2)]},
        {"name": "g1", "kind": "spiking", "shape": [3], "size": 3, "du": 4095, "dv": 0, "vth_mant": 131071,
         "bias_exp": 0, "host_bias_exp": -1, "scale": 1.0, "reset": "zero", "offset": 1,
         "slices": [{"core": 1, "start": 0, "stop": 2}, {"core": 2, "start": 2, "stop": 3}],
         "projections": [proj("g0", [2], "g1.p0.weight", 3)]},
    ]
    cores = [{"core": 0, "chip": 0, "groups": ["g0"], "neurons": 2, "axons_in": 1, "axons_out": 2, "synapses": 2,
              "memory_bits": 0},
             {"core": 1, "chip": 0, "groups": ["g1"], "neurons": 2, "axons_in": 1, "axons_out": 0, "synapses": 2,
              "memory_bits": 0},
             {"core": 2, "chip": 0, "groups": ["g1"], "neurons": 1, "axons_in": 1, "axons_out": 0, "synapses": 1,
              "memory_bits": 0}]
    cfg = {"format": "snnc-loihi-sim", "version": 1, "target": "loihi-sim", "num_steps": T, "dt": 1e-3,
           "latency_steps": L, "input": {"name": "input", "shape": [1], "encoding": "spikes"},
           "outputs": [{"name": "output", "group": "g1", "read_step": L - 1}], "groups": groups, "cores": cores}
    return cfg, arrays


@pytest.fixture(scope="module")
def hand():
    cfg, arrays = _config()
    prog = Program(cfg, arrays, TARGET)
    x = np.zeros((T, 2, 1), np.float32)                          # two samples, no input spikes
    counts = slice_counts_for(prog)
    rec = prog.run(x, record=True)
    return prog, counts, rec, measure(prog, rec, counts), measure(prog, prog.run(x), counts)


# Per step t = 0..4, by hand (ns; [time_ns] of loihi-sim.toml: access 6.0, update 3.7, spike_out 30, message_out 5.1,
# message_in 16, sparse synapse 4.7). g0 fires 1 spike at even steps (neuron 0), 2 at odd steps; both neurons are
# active every step; each spike sends one message.
#   core 0: 2 x 6 + 2 x 3.7 + 30 + 5.1 = 54.5 (even t)  |  12 + 7.4 + 60 + 10.2 = 89.6 (odd t)
#   core 1: one message, 2 SynOps every step; its 2 neurons active from t = 1: 12 + 16 + 9.4 = 37.4 (t = 0), 44.8
#   core 2: 6, 26.7 (t = 1: message + SynOp), 9.7, 30.4, 9.7
# step = slowest core + barrier (3 cores on one tile: 600 ns)
STEP_NS = [654.5, 689.6, 654.5, 689.6, 654.5]


def test_time_per_step_by_hand(hand):
    prog, counts, rec, m, _ = hand
    tm = m["time"]
    assert tm["basis"] == "trace" and tm["tiles"] == 1 and tm["barrier_s"] == pytest.approx(600e-9)
    assert tm["time_per_step_s"]["mean"] == pytest.approx(np.mean(STEP_NS) * 1e-9)
    assert tm["time_per_step_s"]["max"] == pytest.approx(max(STEP_NS) * 1e-9)
    assert tm["time_per_inference_s"] == pytest.approx(sum(STEP_NS) * 1e-9)
    assert tm["busiest_core"] == 0
    per = {c["core"]: c for c in tm["per_core"]}
    assert per[0]["time_per_step_s_mean"] == pytest.approx((3 * 54.5 + 2 * 89.6) / 5 * 1e-9)
    assert per[0]["time_per_step_s_max"] == pytest.approx(89.6e-9)
    assert per[0]["slowest_in_steps"] == 2 * L                        # two samples x five steps
    assert per[1]["time_per_step_s_mean"] == pytest.approx((37.4 + 4 * 44.8) / 5 * 1e-9)
    assert per[2]["time_per_step_s_mean"] == pytest.approx((6 + 26.7 + 9.7 + 30.4 + 9.7) / 5 * 1e-9)
    b = per[1]["breakdown_s"]
    assert b["message_in_s"] == pytest.approx(16e-9) and b["synapse_s"] == pytest.approx(2 * 4.7e-9)
    assert b["neuron_access_s"] == pytest.approx(12e-9) and b["neuron_update_s"] == pytest.approx(4 * 2 * 3.7e-9 / 5)
    ev = per[0]["events_per_step"]
    assert ev["spikes"] == pytest.approx(7 / 5) and ev["messages_out"] == pytest.approx(7 / 5)
    assert per[2]["events_per_step"]["synops_sparse"] == pytest.approx(2 / 5)
    # the headline figures in per_inference are the time section's
    a = m["per_inference"]
    assert a["time_per_step_s_mean"] == tm["time_per_step_s"]["mean"]
    assert a["time_per_step_s_max"] == tm["time_per_step_s"]["max"]
    assert a["time_per_inference_s"] == tm["time_per_inference_s"]


def test_time_fields_are_consistent(hand):
    prog, counts, rec, m, m_mean = hand
    tm = m["time"]
    for c in tm["per_core"]:  # a step takes at least every core's time plus the barrier
        assert tm["time_per_step_s"]["max"] >= c["time_per_step_s_max"] + tm["barrier_s"] - 1e-18
        assert c["time_per_step_s_mean"] == pytest.approx(sum(c["breakdown_s"].values()))
    # an inference is the sum of its steps: L x the mean step (every sample has L steps)
    assert tm["time_per_inference_s"] == pytest.approx(tm["steps"] * tm["time_per_step_s"]["mean"])
    assert tm["time_per_inference_s_max"] >= tm["time_per_inference_s"]
    assert tm["time_per_step_s_overlap"]["mean"] <= tm["time_per_step_s"]["mean"]
    # without a trace: each core's mean events, every step alike, a lower bound on the mean of the maxima
    tmm = m_mean["time"]
    assert tmm["basis"] == "mean" and tmm["time_per_step_s"]["mean"] == tmm["time_per_step_s"]["max"]
    assert tmm["time_per_step_s"]["mean"] <= tm["time_per_step_s"]["mean"] + 1e-18
    assert tmm["time_per_step_s"]["mean"] == pytest.approx(600e-9 + (3 * 54.5 + 2 * 89.6) / 5 * 1e-9)
    assert tmm["time_per_inference_s"] == pytest.approx(L * tmm["time_per_step_s"]["mean"])
    # the same counts with or without a trace; the report's JSON takes them
    assert m_mean["per_inference"]["synops"] == m["per_inference"]["synops"]
    json.dumps({k: m[k] for k in ("time", "energy_sanafe", "per_inference")})
    # every core's time from time_model with all cores listed
    full = time_model(prog, rec, counts, top=3)
    assert [c["core"] for c in full["per_core"]] == [0, 1, 2]


def test_energy_unchanged_and_sanafe_convention_by_hand(hand):
    _, _, _, m, _ = hand
    a = m["per_inference"]
    # 12 SynOps (core 1: 2 x 5 steps; core 2: 1 x 2), 25 compartment-steps of which 21 active, 7 spikes and
    # 7 messages, all within tile 0
    assert a["synops"] == 12 and a["spikes"] == 7 and a["spike_messages"] == 7
    assert a["neuron_updates_active"] == 21 and a["neuron_updates_inactive"] == 4
    # snnc's figure (Davies 2018 Table 2), as before
    assert m["energy"]["per_inference_pJ"] == pytest.approx(12 * 23.6 + 21 * 81 + 4 * 52 + 7 * 1.7)
    es = m["energy_sanafe"]
    assert es["synops_by_unit"] == {"conv": 0.0, "sparse": 12.0, "dense": 0.0}
    assert es["breakdown"]["synapse_pJ"] == pytest.approx(12 * 33.6)
    assert es["breakdown"]["neuron_pJ"] == pytest.approx(25 * 51.2 + 21 * 21.6 + 7 * 69.3)
    assert es["breakdown"]["message_pJ"] == pytest.approx(7 * 111.0)
    assert es["detail"]["hops_pJ"] == pytest.approx(0.0)
    assert es["per_inference_pJ"] == pytest.approx(12 * 33.6 + 25 * 51.2 + 21 * 21.6 + 7 * 69.3 + 7 * 111.0)
    assert "loihi.yaml" in es["source"] and "loihi.yaml" in m["time"]["source"]


def test_barrier_table_and_tiles():
    tn = TARGET["time_ns"]
    assert [barrier_ns(n, tn) for n in (1, 2, 3, 4, 28, 29, 64)] == [600, 1000, 1000, 1400, 1400, 1800, 1800]
    chip = TARGET["chip"]
    cores = [{"core": c, "neurons": 1} for c in (0, 3, 4, 9, 128)]  # tiles 0, 0, 1, 2 and chip 1's tile 0
    assert tiles_used(cores, chip) == 4
    assert tiles_used(cores + [{"core": 200, "neurons": 0}], chip) == 4


def test_synapse_units():
    conv = {"format": "population", "ops": [{"op": "sum_pool2d"}, {"op": "conv2d"}]}
    assert synapse_unit(conv) == "conv"
    assert synapse_unit({"format": "population", "ops": [{"op": "flatten"}, {"op": "dense"}]}) == "dense"
    assert synapse_unit({"format": "discrete", "ops": [{"op": "conv2d"}]}) == "sparse"
    assert synapse_unit({"ops": [{"op": "dense"}]}) == "sparse"
