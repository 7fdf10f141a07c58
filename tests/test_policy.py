"""Width selection: the most accurate bucket within the memory (and latency) budget."""

import json

import pytest

from inn_mobile.format import bundle
from inn_mobile.runtime import policy
from inn_mobile.runtime.policy import BudgetError, Candidate, choose

MIB = 2**20
CANDS = [
    Candidate("w0250", 80.0, 2 * MIB, 1.0),
    Candidate("w0500", 88.0, 4 * MIB, 2.0),
    Candidate("w0750", 91.0, 6 * MIB, 3.0),
    Candidate("w1000", 91.0, 8 * MIB, 4.0),
]


def test_most_accurate_that_fits():
    assert choose(CANDS, 5 * MIB).bucket == "w0500"
    assert choose(CANDS, 7 * MIB).bucket == "w0750"
    c = choose(CANDS, 6 * MIB - 1)
    assert c.bucket == "w0500" and "over budget: w0750, w1000" in c.reason


def test_ties_go_to_the_smaller_bucket():
    assert choose(CANDS, 100 * MIB).bucket == "w0750"  # same accuracy as w1000, less memory


def test_latency_budget_excludes_slow_buckets():
    c = choose(CANDS, 100 * MIB, latency_budget_ms=2.5)
    assert c.bucket == "w0500" and "2.00 ms <= 2.50 ms" in c.reason


def test_budget_too_small_names_the_smallest_need():
    with pytest.raises(BudgetError, match=r"smallest bucket 'w0250' needs 2.00 MiB"):
        choose(CANDS, MIB)
    with pytest.raises(BudgetError, match=r"needs 2.00 MiB and 1.00 ms"):
        choose(CANDS, 100 * MIB, latency_budget_ms=0.5)


def test_missing_profile_is_a_memory_only_choice():
    cands = [Candidate(c.name, c.accuracy, c.memory_bytes) for c in CANDS]
    c = choose(cands, 5 * MIB, latency_budget_ms=0.1)
    assert c.bucket == "w0500" and "latency budget ignored" in c.reason


def test_without_accuracy_the_widest_fitting_wins():
    cands = [Candidate(c.name, None, c.memory_bytes) for c in CANDS]
    assert choose(cands, 7 * MIB).bucket == "w0750"


def _bundle_with_graphs(model, x):
    from inn_mobile.core.convert import convert
    from inn_mobile.format import runtime_file

    im = convert(model.eval(), x[:2])
    buckets = bundle.make_buckets(im, (0.5, 1.0), multiple_of=1)
    b = bundle.Bundle(im, buckets)
    for k, bk in enumerate(buckets):
        bk.info["runtimes"] = {"fake": {"accuracy": 90.0 + k, "weights_bytes": (k + 1) * 1000, "arena_bytes": 500}}
        b.graphs[(k, "fake")] = runtime_file.encode_record([runtime_file.Image("g", b"x")])
    return b


def test_candidates_from_bundle_and_profile(tmp_path, digits_model, digits_data):
    b = bundle.decode(bundle.encode(_bundle_with_graphs(digits_model, digits_data[0])))
    cands = policy.candidates(b, "fake")
    assert [(c.memory_bytes, c.latency_ms, c.accuracy) for c in cands] == [(1500, None, 90.0), (2500, None, 91.0)]
    path = tmp_path / "device.json"
    names = [bk.name for bk in b.buckets]
    policy.save_profile(path, "fake", "test-host", {names[0]: {"latency_ms": 1.5, "peak_bytes": 4000},
                                                    names[1]: {"latency_ms": 3.0, "peak_bytes": 9000}})
    prof = policy.load_profile(path)
    cands = policy.candidates(b, "fake", prof)
    assert [(c.memory_bytes, c.latency_ms) for c in cands] == [(4000, 1.5), (9000, 3.0)]
    assert choose(cands, 8000).bucket == names[0]
    with pytest.raises(ValueError, match="measured for 'fake', not 'litert'"):
        policy.candidates(b, "litert", prof)
    with pytest.raises(ValueError, match="no 'litert' graphs; it has \\['fake'\\]"):
        policy.candidates(b, "litert")


def test_bad_profiles_are_rejected(tmp_path):
    p = tmp_path / "p.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read device profile"):
        policy.load_profile(p)
    p.write_text(json.dumps({"version": 1, "runtime": "x", "buckets": {"a": {"latency_ms": 1}}}))
    with pytest.raises(ValueError, match="lacks latency_ms/peak_bytes"):
        policy.load_profile(p)
    with pytest.raises(ValueError, match="not a measurement"):
        policy.save_profile(p, "x", "d", {"a": {"latency_ms": float("nan"), "peak_bytes": 1}})


def test_profiles_are_written_atomically(tmp_path):
    """Through inn_mobile.atomic: a symlink planted at the old fixed ``<out>.tmp`` is not followed."""
    victim, path = tmp_path / "victim", tmp_path / "device.json"
    victim.write_text("precious")
    (tmp_path / "device.json.tmp").symlink_to(victim)
    policy.save_profile(path, "x", "d", {"a": {"latency_ms": 1.0, "peak_bytes": 1}})
    assert victim.read_text() == "precious" and policy.load_profile(path)["buckets"]["a"]["peak_bytes"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.json", "device.json.tmp", "victim"]
