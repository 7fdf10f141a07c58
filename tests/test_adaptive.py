"""Switching width at run time while another thread keeps inferring: nothing dropped, nothing mixed."""

import threading
import time

import pytest
import torch

from inn_mobile.core.convert import convert
from inn_mobile.format import bundle
from inn_mobile.runtime import policy
from inn_mobile.runtime.adaptive import AdaptiveModel


@pytest.fixture(scope="module")
def widths(digits_model, digits_data):
    x = digits_data[0]
    im = convert(digits_model.eval(), x[:2])
    buckets = bundle.make_buckets(im, (0.5, 1.0), multiple_of=1)
    nets = {b.name: im.resize(sizes=b.sizes).eval() for b in buckets}
    return nets, x[:32]


def test_switch_while_inferring_from_another_thread(widths):
    nets, x = widths
    names = list(nets)
    with torch.no_grad():
        expected = {n: net(x) for n, net in nets.items()}
    opened = []

    def open_bucket(name):
        time.sleep(0.05)  # materialising takes a while: requests must keep flowing meanwhile
        opened.append(name)
        return nets[name]

    results, errors, stop = [], [], threading.Event()
    with AdaptiveModel(open_bucket, names[1]) as served:

        def client():
            try:
                while not stop.is_set():
                    with torch.no_grad():
                        results.append(served(x))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        t = threading.Thread(target=client)
        t.start()
        for name in (names[0], names[1], names[0]):
            before = len(results)
            assert served.switch(name).result(timeout=30) == name
            assert served.bucket == name
            deadline = time.time() + 10
            while len(results) < before + 3 and time.time() < deadline:  # requests kept completing
                time.sleep(0.01)
        stop.set()
        t.join(timeout=30)
    assert not errors
    assert served.switches == 3 and opened == [names[1], names[0], names[1], names[0]]
    # every answer is exactly one width's answer: no request saw a half-swapped model
    seen = {n for r in results for n, e in expected.items() if torch.equal(r, e)}
    assert seen == set(names)
    assert all(any(torch.equal(r, e) for e in expected.values()) for r in results)


def test_adapt_reruns_the_policy_and_a_failed_open_keeps_serving(widths):
    nets, x = widths
    names = list(nets)
    cands = [policy.Candidate(names[0], 90.0, 1000), policy.Candidate(names[1], 95.0, 4000)]

    def open_bucket(name):
        if name == "broken":
            raise RuntimeError("cannot materialise")
        return nets[name]

    with AdaptiveModel(open_bucket, names[1], cands) as served:
        choice, done = served.adapt(memory_budget=2000)
        assert choice.bucket == names[0] and done.result(timeout=30) == names[0]
        with pytest.raises(policy.BudgetError):
            served.adapt(memory_budget=10)
        with pytest.raises(RuntimeError, match="cannot materialise"):
            served.switch("broken").result(timeout=30)
        assert served.bucket == names[0]
        with torch.no_grad():
            assert torch.equal(served(x), nets[names[0]](x))


def test_a_burst_of_switches_materialises_only_the_latest():
    """101 switches queued behind a slow one: the latest is opened next, the rest are cancelled (it
    was 101 materialisations, the latest served after 601 ms)."""
    from concurrent.futures import CancelledError

    nets = {"w0500": lambda x: x, "w1000": lambda x: 2 * x}
    names = list(nets)
    opened, release = [], threading.Event()

    def open_bucket(name):
        if opened:  # the first switch blocks until the burst is queued
            release.wait(timeout=30)
        opened.append(name)
        return nets[name]

    with AdaptiveModel(open_bucket, names[1]) as served:
        first = served.switch(names[0])
        burst = [served.switch(names[k % 2]) for k in range(101)]
        release.set()
        assert first.result(timeout=30) == names[0] and burst[-1].result(timeout=30) == names[0]
        assert all(f.cancelled() for f in burst[:-1])
        with pytest.raises(CancelledError):
            burst[0].result()
    assert opened == [names[1], names[0]] and served.switches == 1 and served(3) == 3
