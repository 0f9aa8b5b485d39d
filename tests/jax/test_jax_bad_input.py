"""Bad input: a clear error, raised before anything runs, and the user's arrays untouched."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lrfind_jax_testing import (
    ADAM,
    IN,
    as_batches,
    assert_tree_equal,
    host_copy,
    init_mlp,
    make_data,
    mlp_loss,
)

from lrfind_jax import JaxOptions, Settings, lr_find

STEPS = 12


@pytest.fixture
def user():
    """The user's params and data (device arrays), and a check they are untouched."""
    params = init_mlp(0)
    data = jax.device_put(make_data(STEPS))
    snapshot = (host_copy(params), host_copy(data))
    yield params, data
    assert_tree_equal(snapshot[0], params)
    assert_tree_equal(snapshot[1], data)


@pytest.mark.parametrize(
    ("where", "values", "error", "message"),
    [
        ("call", {"start_lr": 0.0}, ValueError, "start_lr must be a finite number > 0, got 0.0"),
        ("call", {"start_lr": -1e-3}, ValueError, "start_lr must be a finite number > 0"),
        ("call", {"end_lr": float("nan")}, ValueError, "end_lr must be a finite number > 0"),
        ("call", {"start_lr": 1.0, "end_lr": 0.1}, ValueError, "start_lr must be < end_lr"),
        ("call", {"start_lr": "1e-3"}, TypeError, "start_lr must be a real number"),
        ("call", {"num_steps": 1}, ValueError, "num_steps must be an int >= 2, got 1"),
        ("call", {"num_steps": 2.5}, TypeError, "num_steps must be an int, got float"),
        ("call", {"mode": "grid"}, ValueError, "unknown mode 'grid'"),
        ("call", {"rng": 42}, TypeError, r"rng must be a PRNG key such as jax\.random\.key\(0\)"),
        ("call", {"settings": "keras"}, ValueError, "unknown preset 'keras'"),
        ("call", {"settings": {"beta": 0.9}}, TypeError,
         "settings must be an lrfind Settings, a preset name"),
        ("call", {"options": {"progress": False}}, TypeError,
         "options must be lrfind_jax.JaxOptions, got dict"),
        ("settings", {"schedule": "cosine"}, ValueError, "unknown schedule 'cosine'"),
        ("settings", {"method": "magic"}, ValueError, "unknown suggestion method 'magic'"),
        ("settings", {"methods": ["valley", "magic"]}, ValueError,
         "unknown suggestion method 'magic'"),
        ("settings", {"beta": 1.0}, ValueError, r"beta must be in \[0, 1\)"),
        ("settings", {"diverge_factor": 1.0}, ValueError, "diverge_factor must be > 1"),
        ("settings", {"accumulation_steps": 0}, ValueError,
         "accumulation_steps must be an int >= 1"),
        ("options", {"chunk_size": 0}, ValueError, "chunk_size must be an int >= 1, got 0"),
        ("options", {"progress": "yes"}, TypeError, "progress must be a bool"),
        ("options", {"execution": "fast"}, ValueError, "unknown execution 'fast'"),
        ("options", {"val_loss_fn": "mse"}, TypeError, "val_loss_fn must be callable"),
        ("options", {"train_mode": False}, ValueError, "train_mode=False applies to nnx modules"),
    ],
)
def test_bad_options(user, where, values, error, message):
    """Settings and JaxOptions check their fields when built (here inside the call);
    the suggestion methods and the call's own keywords are checked by lr_find."""
    params, data = user
    with pytest.raises(error, match=message):
        keywords: dict = {"num_steps": STEPS}
        if where == "call":
            keywords.update(values)
        elif where == "settings":
            keywords["settings"] = Settings(**values)
        else:
            keywords["options"] = JaxOptions(**values)
        lr_find(params, ADAM, data, mlp_loss, **keywords)


def test_the_order_before_0_2_says_the_new_order(user):
    """lr_find(loss_fn, params, optimizer, data) was the order before the redesign."""
    params, data = user
    new_order = r"lr_find\(params, optimizer, train_data, loss_fn\)"
    with pytest.raises(TypeError, match=r"the first argument is a function, but lr_find "
                       r"takes the parameters first and the loss fourth: " + new_order):
        lr_find(mlp_loss, params, ADAM, data, num_steps=STEPS)
    with pytest.raises(TypeError, match=r"loss_fn is missing: " + new_order):
        lr_find(params, ADAM, data, num_steps=STEPS)
    # The keywords that moved into JaxOptions and Settings are no keywords of lr_find.
    for moved in ({"progress": False}, {"chunk_size": 4}, {"beta": 0.9}, {"num_sweeps": 2}):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            lr_find(params, ADAM, data, mlp_loss, num_steps=STEPS, **moved)


def test_an_nnx_module_as_params_points_at_lr_find_nnx(user):
    nnx = pytest.importorskip("flax.nnx")
    _, data = user
    module = nnx.Linear(8, 3, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"params is a Flax nnx module: use "
                       r"lrfind_jax\.lr_find_nnx\(model, optimizer, train_data, loss_fn\)"):
        lr_find(module, ADAM, data, mlp_loss, num_steps=STEPS)


def test_non_scalar_loss(user):
    params, data = user

    def per_example(p, batch):
        inputs, labels = batch
        logits = inputs @ p["w1"] @ jnp.ones((p["w1"].shape[1], 3))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    with pytest.raises(ValueError, match=r"scalar loss, got shape \(16,\).*\.mean\(\)"):
        lr_find(params, ADAM, data, per_example, num_steps=STEPS)


def test_integer_or_non_array_loss(user):
    params, data = user
    with pytest.raises(TypeError, match=r"floating-point loss, got dtype int32"):
        lr_find(params, ADAM, data, lambda p, b: jnp.sum(b[1]), num_steps=STEPS)
    with pytest.raises(TypeError, match=r"scalar jax array, got tuple"):
        lr_find(params, ADAM, data, lambda p, b: (mlp_loss(p, b), 1.0), num_steps=STEPS)


def test_stateful_loss_must_return_its_state(user):
    params, data = user
    state = {"count": jnp.zeros(())}
    with pytest.raises(TypeError, match=r"must return \(loss, new_model_state\)"):
        lr_find(params, ADAM, data, lambda p, s, b, k: mlp_loss(p, b), model_state=state,
                num_steps=STEPS)
    with pytest.raises(ValueError, match=r"model state returned by loss_fn .* does not match"):
        lr_find(params, ADAM, data,
                lambda p, s, b, k: (mlp_loss(p, b), {"count": s["count"], "extra": 1.0}),
                model_state=state, num_steps=STEPS)
    with pytest.raises(ValueError, match=r"model state returned .*\(3,\).* does not match"):
        lr_find(params, ADAM, data,
                lambda p, s, b, k: (mlp_loss(p, b), {"count": jnp.zeros(3)}),
                model_state=state, num_steps=STEPS)
    assert float(state["count"]) == 0.0


def test_batch_shapes_that_change_between_steps(user):
    params, data = user
    batches = as_batches(jax.device_get(data))
    inputs, labels = batches[3]
    shorter = [*batches[:3], (inputs[:8], labels[:8]), *batches[4:]]
    with pytest.raises(ValueError, match=r"batch 3 differs from batch 0: got \[\[0\]: \(8, 8\)"):
        lr_find(params, ADAM, shorter, mlp_loss, num_steps=STEPS, options=JaxOptions(chunk_size=8))
    # Found later, in the second chunk: the error names the batch all the same.
    retyped = [*batches[:10], (inputs.astype(np.float16), labels), *batches[11:]]
    with pytest.raises(ValueError, match=r"batch 10 differs from batch 0.*float16"):
        lr_find(params, ADAM, retyped, mlp_loss, num_steps=STEPS, options=JaxOptions(chunk_size=4))
    restructured = [*batches[:2], {"x": inputs, "y": labels}, *batches[3:]]
    with pytest.raises(ValueError, match=r"batch 2 differs from batch 0"):
        lr_find(params, ADAM, restructured, mlp_loss, num_steps=STEPS)


@pytest.mark.parametrize(
    "empty",
    [[], iter([]), (x for x in ()), (np.zeros((0, 16, 8)), np.zeros((0, 16)))],
    ids=["list", "iterator", "generator", "stacked"],
)
def test_empty_data(user, empty):
    params, _ = user
    with pytest.raises(ValueError, match=r"train_data is empty"):
        lr_find(params, ADAM, empty, mlp_loss, num_steps=STEPS)


def test_re_iterable_that_is_empty_the_second_time(user):
    params, data = user
    batches = as_batches(jax.device_get(data))[:3]

    class OneShotIterable:
        def __init__(self):
            self.items = iter(batches)

        def __iter__(self):
            return self.items

    # The cycling notice is only emitted by a sweep that finishes; this one fails.
    with pytest.raises(ValueError, match="yielded no batch when iterated again"):
        lr_find(params, ADAM, OneShotIterable(), mlp_loss, num_steps=STEPS,
                options=JaxOptions(chunk_size=8))


def test_malformed_stacked_data(user):
    params, (inputs, labels) = user
    with pytest.raises(ValueError, match=r"same leading .step. axis, got .*12.*11"):
        lr_find(params, ADAM, (inputs, labels[:11]), mlp_loss, num_steps=STEPS)
    with pytest.raises(ValueError, match=r"train_data\[1\] is a scalar"):
        lr_find(params, ADAM, (inputs, jnp.int32(3)), mlp_loss, num_steps=STEPS)
    with pytest.raises(TypeError, match=r"train_data must be stacked arrays .* got int"):
        lr_find(params, ADAM, 7, mlp_loss, num_steps=STEPS)
    with pytest.raises(TypeError, match=r"numeric arrays only"):
        lr_find(params, ADAM, [("a", 1)], mlp_loss, num_steps=STEPS)


def test_too_few_batches_for_one_accumulated_update(user):
    params, data = user
    batches = as_batches(jax.device_get(data))[:2]
    with pytest.raises(ValueError, match=r"lr_find recorded no point: data exhausted after 0 "
                       r"steps"):
        lr_find(params, ADAM, iter(batches), mlp_loss, num_steps=STEPS,
                settings=Settings(accumulation_steps=3))


def test_bad_optimizers(user):
    params, data = user
    with pytest.raises(ValueError, match=r"no injectable learning rate; wrap your optimizer "
                       r"with optax.inject_hyperparams\(optax.adam\)\(learning_rate=\.\.\.\) "
                       r"or pass a factory"):
        lr_find(params, optax.adam(1e-3), data, mlp_loss, num_steps=STEPS)
    with pytest.raises(TypeError, match=r"optimizer must be an optax GradientTransformation"):
        lr_find(params, "adam", data, mlp_loss, num_steps=STEPS)
    with pytest.raises(TypeError, match=r"factory must return an optax GradientTransformation"):
        lr_find(params, lambda lr: lr * 2, data, mlp_loss, num_steps=STEPS)
    with pytest.raises(TypeError, match=r"treats it as a factory .* raised"):
        lr_find(params, lambda: optax.adam(1e-3), data, mlp_loss, num_steps=STEPS)


def test_bad_loss_fn_and_params(user):
    params, data = user
    with pytest.raises(TypeError, match=r"loss_fn must be callable"):
        lr_find(params, ADAM, data, "mse", num_steps=STEPS)
    with pytest.raises(ValueError, match=r"params\['n'\] has dtype int32: lr_find differentiates"):
        lr_find({"n": jnp.arange(3)}, ADAM, data, mlp_loss, num_steps=STEPS)


def test_an_integer_leaf_among_the_params_is_named_with_what_to_do(user):
    params, data = user
    with pytest.raises(ValueError, match=r"params\['step'\] has dtype int32.*lr_find: in "
                       r"model_state=.*lr_find_linen: in a collection other than 'params'; "
                       r"lr_find_nnx: in an nnx.Variable that is not an nnx.Param, or outside "
                       r"wrt="):
        lr_find({**params, "step": jnp.zeros((), jnp.int32)}, ADAM, data, mlp_loss,
                num_steps=STEPS)


def test_a_loss_that_returns_a_python_float_is_refused(user):
    params, data = user
    with pytest.raises(TypeError, match=r"loss_fn must return a JAX scalar computed from params.*"
                       r"got a float"):
        lr_find(params, ADAM, data, lambda p, b: 1.0, num_steps=STEPS)
    with pytest.raises(TypeError, match=r"got a float64"):
        lr_find(params, ADAM, data, lambda p, b: np.float32(1.0) * np.ones(()), num_steps=STEPS)


def test_the_loss_signature_must_match_the_form_chosen(user):
    params, data = user
    with pytest.raises(TypeError, match=r"with model_state= or rng=, loss_fn must take \(params, "
                       r"model_state, batch, key\).*mlp_loss\(params"):
        lr_find(params, ADAM, data, mlp_loss, rng=jax.random.key(0), num_steps=STEPS)

    def stateful(params, state, batch, key):
        return mlp_loss(params, batch), state

    with pytest.raises(TypeError, match=r"loss_fn must take \(params, batch\); stateful\(params, "
                       r"state, batch, key\) does not.*pass model_state= and/or rng="):
        lr_find(params, ADAM, data, stateful, num_steps=STEPS)


def test_a_whole_dataset_passed_as_one_stacked_batch_is_refused(user):
    params, _ = user
    inputs = np.random.default_rng(0).normal(size=(1797, IN)).astype(np.float32)
    labels = np.zeros(1797, np.int32)
    with pytest.raises(ValueError, match=r"train_data\[1\] of shape \(1797,\) gives each step a "
                       r"single scalar: this looks like a whole dataset passed as one batch"):
        lr_find(params, ADAM, (inputs, labels), mlp_loss, num_steps=STEPS)


def test_a_huge_sweep_and_a_plot_folder_that_does_not_exist_are_refused_before_any_work(
    user, tmp_path
):
    params, data = user
    with pytest.raises(ValueError, match=r"lr_find allows at most 10,000,000 micro-batches"):
        lr_find(params, ADAM, data, mlp_loss, num_steps=10**12)
    missing = tmp_path / "nope" / "curve.png"
    calls = []

    def counting(p, batch):
        calls.append(1)
        return mlp_loss(p, batch)

    with pytest.raises(ValueError, match=r"plot_path .*curve.png.*: its folder .*nope.* does not "
                       r"exist"):
        lr_find(params, ADAM, data, counting, num_steps=STEPS, plot_path=missing)
    assert calls == []  # refused before the loss was ever traced


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [
        ({"pct_startt": 0.3}, TypeError, "not keywords of optax.cosine_onecycle_schedule"),
        ({"div_factor": 0.0}, ValueError, "cosine_onecycle_schedule refused them"),
        ({"final_div_factor": -1.0}, ValueError, "refused them: .*non-negative"),
        ({"pct_start": 2.0}, ValueError, "does not rise to its peak"),
        ({"peak_value": 1.0}, ValueError, "may not set"),
    ],
)
def test_one_cycle_options_are_tried_when_the_options_are_built(keywords, error, message):
    with pytest.raises(error, match=message):
        JaxOptions(one_cycle_options=keywords)


def test_valid_one_cycle_options_are_kept():
    options = JaxOptions(one_cycle_options={"pct_start": 0.3, "div_factor": 10.0})
    assert options.one_cycle_options == {"pct_start": 0.3, "div_factor": 10.0}


def test_a_loss_that_ignores_its_params_is_refused(user):
    params, data = user
    outer = init_mlp(1)

    def closes_over_outer(p, batch):  # the slip: the params of the enclosing scope
        return mlp_loss(outer, batch)

    with pytest.raises(ValueError, match="loss_fn's loss does not depend on the params it is "
                                         "given"):
        lr_find(params, ADAM, data, closes_over_outer, num_steps=STEPS,
                options=JaxOptions(progress=False))


def test_a_loss_through_a_nested_jit_is_not_refused(user):
    params, data = user

    @jax.jit
    def nested(p, batch):
        return mlp_loss(p, batch)

    result = lr_find(params, ADAM, data, nested, num_steps=STEPS,
                     options=JaxOptions(progress=False))
    assert result.meta["steps_trained"] == STEPS


@pytest.mark.skipif(not hasattr(jax, "new_ref"), reason="jax without mutable refs")
def test_a_loss_that_accumulates_into_a_mutable_ref_is_not_refused(user):
    params, data = user

    def through_a_ref(p, batch):  # the write into the ref has no output of its own
        total = jax.new_ref(jnp.zeros((), jnp.float32))
        total[...] += mlp_loss(p, batch)
        return total[...]

    result = lr_find(params, ADAM, data, through_a_ref, num_steps=STEPS,
                     options=JaxOptions(progress=False))
    assert result.meta["steps_trained"] == STEPS
