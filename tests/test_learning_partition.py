"""Non-IID partitions: label proportions in distribution, reproducibility, exact histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from foglearn.learning import load_dataset, train
from foglearn.learning.partition import Partition, PartitionError, collectors, device_stream
from foglearn.learning.trainer import TrainingError, point_stream
from foglearn.network.scenario import Scenario
from foglearn.planning.plan import Plan

TINY = load_dataset("tiny")


def _collected(T=20, n=50, seed=0, hi=30):
    return np.random.default_rng(seed).integers(0, hi, (T, n))


def _labels(C=10, per=3000):
    return np.repeat(np.arange(C), per)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 2.0])
def test_dirichlet_proportions_follow_dirichlet(alpha):
    """Each device's label mix is q_i ~ Dirichlet(α·1): every marginal q_ic ~ Beta(α, (C-1)α) (KS
    test), and two labels' shares are negatively correlated as the Dirichlet says."""
    C, n = 10, 3000
    q = Partition("dirichlet", alpha=alpha).proportions(n, C, seed=1)
    np.testing.assert_allclose(q.sum(1), 1.0)
    for c in (0, 7):
        assert stats.kstest(q[:, c], stats.beta(alpha, (C - 1) * alpha).cdf).pvalue > 1e-3
    a0 = C * alpha
    expected_corr = -1.0 / (C - 1)  # corr(q_a, q_b) = -α_a α_b / sqrt(α_a(a0-α_a) α_b(a0-α_b))
    assert abs(np.corrcoef(q[:, 0], q[:, 1])[0, 1] - expected_corr) < 0.06
    assert a0 > 0


def test_dirichlet_histograms_follow_the_drawn_mix_and_sum_to_what_was_collected():
    D = _collected()
    labels = _labels()
    ds = device_stream("dirichlet:0.3", D, labels, passes=2, seed=4)
    N = D.sum(0)
    np.testing.assert_array_equal(ds.histograms.sum(1), 2 * N)
    assert np.all(
        np.abs(ds.histograms / 2 - ds.proportions * N[:, None]) < 1.0
    )  # largest remainder
    who = np.tile(collectors(D), 2)
    for i in (0, 17, 49):  # the points device i collects carry its labels
        np.testing.assert_array_equal(
            np.bincount(labels[ds.stream[who == i]], minlength=10), ds.histograms[i]
        )


def test_small_alpha_concentrates_large_alpha_spreads():
    D = _collected(n=200)
    labels = _labels()
    few = device_stream("dirichlet:0.05", D, labels, 1, 0).histograms
    many = device_stream("dirichlet:100", D, labels, 1, 0).histograms
    top = lambda h: (h.max(1) / np.maximum(h.sum(1), 1)).mean()  # noqa: E731
    assert top(few) > 0.7 and top(many) < 0.2


def test_reproducible_by_seed():
    D = _collected()
    labels = _labels()
    a = device_stream("dirichlet:0.5", D, labels, 2, seed=3)
    b = device_stream("dirichlet:0.5", D, labels, 2, seed=3)
    c = device_stream("dirichlet:0.5", D, labels, 2, seed=4)
    np.testing.assert_array_equal(a.stream, b.stream)
    assert not np.array_equal(a.proportions, c.proportions)
    fixed = Partition("dirichlet", alpha=0.5, seed=9)
    np.testing.assert_array_equal(
        device_stream(fixed, D, labels, 1, seed=0).proportions,
        device_stream(fixed, D, labels, 1, seed=1).proportions,
    )


@pytest.mark.parametrize("mode", ["random", "deterministic", "first-deterministic"])
def test_classes_gives_k_labels_per_device(mode):
    D = _collected(n=30, hi=40)
    part = Partition("classes", num_classes_per_partition=3, class_assignment_mode=mode)
    ds = device_stream(part, D, _labels(), passes=1, seed=2)
    N = D.sum(0)
    np.testing.assert_array_equal(ds.histograms.sum(1), N)
    assert np.all((ds.histograms > 0).sum(1) == 3)
    assert np.all(np.abs(ds.histograms - N[:, None] / 3 * (ds.proportions > 0)) < 1.0)
    if mode != "random":
        assert all(ds.histograms[i, i % 10] > 0 for i in range(30))
    if mode == "deterministic":
        assert all(ds.histograms[i, (i + 2) % 10] > 0 for i in range(30))


def test_iid_is_the_papers_stream_bit_for_bit():
    D = _collected()
    ds = device_stream("iid", D, _labels(), passes=3, seed=5)
    ref, _ = point_stream(int(D.sum()) * 3, 30000, 5)
    np.testing.assert_array_equal(ds.stream, ref)
    assert device_stream("dirichlet:inf", D, _labels(), 3, 5).stream.tolist() == ref.tolist()
    np.testing.assert_array_equal(ds.histograms.sum(1), 3 * D.sum(0))


def test_each_class_is_drawn_without_replacement_until_it_runs_out():
    D = _collected(T=5, n=10, hi=20)
    labels = _labels(per=500)
    ds = device_stream("dirichlet:1", D, labels, passes=1, seed=0)
    assert not ds.wrapped and len(np.unique(ds.stream)) == ds.stream.size
    scarce = device_stream("classes:1", _collected(T=50, n=10, hi=40), _labels(per=30), 1, 0)
    assert scarce.wrapped


@pytest.mark.parametrize(
    "spec, want",
    [
        ("iid", Partition()),
        ("dirichlet:0.1", Partition("dirichlet", 0.1)),
        ("classes:2", Partition("classes", num_classes_per_partition=2)),
        (" Dirichlet:inf ", Partition("dirichlet", math.inf)),
        ("dirichlet:0.1234567", Partition("dirichlet", 0.1234567)),  # α is stored as it runs, not rounded
    ],
)
def test_parse_and_spec(spec, want):
    p = Partition.parse(spec)
    assert p == want
    assert Partition.parse(p.spec) == p


@pytest.mark.parametrize(
    "spec",
    [
        "dirichlet",
        "dirichlet:0",
        "dirichlet:-1",
        "dirichlet:nan",
        "classes:0",
        "classes:1.5",
        "noniid",
        "iid:3",
        3,
    ],
)
def test_bad_partition_is_refused(spec):
    with pytest.raises(PartitionError, match="partition"):
        Partition.parse(spec)


def test_bad_fields_are_refused():
    with pytest.raises(PartitionError, match="class_assignment_mode"):
        Partition("classes", num_classes_per_partition=2, class_assignment_mode="cyclic")
    with pytest.raises(PartitionError, match="alpha"):
        Partition("iid", alpha=1.0)
    with pytest.raises(PartitionError, match="more than the data set's 10 classes"):
        Partition("classes", num_classes_per_partition=11).proportions(3, 10, 0)


def test_train_records_the_partition():
    rng = np.random.default_rng(0)
    T, n = 6, 4
    s = Scenario(
        collected=rng.integers(1, 5, (T, n)),
        proc_cost=rng.random((T, n)),
        error_weight=rng.random((T, n)),
        src=np.array([0]),
        dst=np.array([1]),
        link_cost=np.ones((T, 1)),
    )
    p = Plan.from_fractions(s, np.ones((T, n)), np.zeros((T, 1)))
    r = train(
        s,
        p,
        dataset=TINY,
        model="mlp",
        period=3,
        lr=0.1,
        seed=1,
        eval_every=0,
        partition="classes:2",
    )
    rec = r.config["partition"]
    assert rec["spec"] == "classes:2"
    h = np.array(rec["label_histograms"])
    np.testing.assert_array_equal(h.sum(1), s.collected.sum(0))
    assert np.all((h > 0).sum(1) == 2)
    iid = train(s, p, dataset=TINY, model="mlp", period=3, lr=0.1, seed=1, eval_every=0)
    assert iid.config["partition"]["kind"] == "iid"
    with pytest.raises(TrainingError, match="partition"):
        train(s, p, dataset=TINY, model="mlp", partition="dirichlet:0")


# ---------------------------------------- class weights (the label-aware setting's loss)


def test_sqrt_class_weights_are_inverse_square_root_shares_with_mean_one():
    from foglearn.learning.partition import class_weight_vector

    counts = np.array([900, 100, 0, 9, 1])
    w = class_weight_vector("sqrt", counts)
    assert w.dtype == np.float32 and w.shape == (5,)
    seen = counts > 0
    ratio = w[seen] * np.sqrt(counts[seen])
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)  # ω_c ∝ 1/√N_c
    np.testing.assert_allclose(counts @ w, counts.sum(), rtol=1e-6)  # mean 1 over the collected points
    assert w[2] == 1.0  # a class nobody collects: never trained on
    np.testing.assert_allclose(w[4] / w[0], 30.0, rtol=1e-6)  # 900× rarer: √900 = 30× the weight
    np.testing.assert_array_equal(class_weight_vector(" SQRT ", np.array([5, 5])), [1.0, 1.0])  # balanced: all 1
    assert class_weight_vector(None, counts) is None and class_weight_vector("none", counts) is None
    np.testing.assert_array_equal(class_weight_vector([0, 1, 2.5, 1, 1], counts), [0, 1, 2.5, 1, 1])


@pytest.mark.parametrize("spec, says", [
    ("inverse", "must be one of ('none', 'sqrt') or 5 numbers ≥ 0 (one per class)"),
    ("", "must be one of ('none', 'sqrt')"),
    ([1, 2], "or 5 numbers ≥ 0 (one per class)"),
    ([[1, 1, 1, 1, 1]], "or 5 numbers ≥ 0"),
    ([1, 1, 1, 1, float("nan")], "must be 5 finite numbers ≥ 0"),
    ([1, 1, 1, 1, -1], "must be 5 finite numbers ≥ 0"),
    ([0, 0, 0, 0, 0], "at least one > 0"),
    ([1e300] * 5, "finite and not all 0 in float32"),  # inf once cast to the kernels' float32
    ([1e-50] * 5, "finite and not all 0 in float32"),  # 0 in float32: nothing would train
    ([1, 1, 1, 1, 2e4], "a weight may be at most 10000"),
    ([1e-3, 1, 1, 1, 100], "at most 10000 times the smallest positive one"),
    (["a"] * 5, "or 5 numbers ≥ 0"),
    (["1"] * 5, "or 5 numbers ≥ 0"),  # strings are not numbers
    ([True] * 5, "or 5 numbers ≥ 0"),  # nor are booleans
    (np.ones(5, dtype=complex), "or 5 numbers ≥ 0"),
    (np.array([1, 1, 1, 1, None]), "or 5 numbers ≥ 0"),
    (object(), "or 5 numbers ≥ 0"),
])
def test_bad_class_weights_are_named(spec, says):
    from foglearn.errors import InputError
    from foglearn.learning.partition import class_weight_vector

    with pytest.raises(InputError, match="class_weights = ") as err:
        class_weight_vector(spec, np.array([5, 5, 5, 5, 5]))
    assert says in str(err.value)


def test_class_weights_take_tensors_and_the_models_classes():
    """A tensor (with a gradient) is read as numbers; ``n_classes`` beyond the collected labels (a training
    set without its last class) gets weight 1 under ``"sqrt"`` and needs one explicit weight per class."""
    import torch

    from foglearn.errors import InputError
    from foglearn.learning.partition import class_weight_vector

    w = class_weight_vector(torch.tensor([1.0, 2.0, 3.0], requires_grad=True), np.array([4, 4, 4]))
    np.testing.assert_array_equal(w, [1, 2, 3])
    w = class_weight_vector("sqrt", np.array([100, 25]), n_classes=3)
    np.testing.assert_allclose(w[:2] * np.sqrt([100, 25]), w[0] * 10)
    assert w[2] == 1.0
    assert class_weight_vector([1, 1, 2], np.array([100, 25]), n_classes=3).tolist() == [1, 1, 2]
    with pytest.raises(InputError, match="or 3 numbers"):
        class_weight_vector([1, 1], np.array([100, 25]), n_classes=3)
