"""lr_find on a small MLP: the curve, the stop, determinism, modes, data, caching."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lrfind_jax_testing import (
    ADAM,
    QUIET,
    as_batches,
    assert_tree_equal,
    host_copy,
    init_mlp,
    make_data,
    mlp_loss,
    patch_monitor,
)

from lrfind_core import LRFindResult, ewa_smooth, find_stop
from lrfind_core.stopping import STOP_NONE
from lrfind_jax import DEFAULT_CHUNK_SIZE, JaxOptions, Settings, clear_program_cache, lr_find

STEPS = 60
SWEEP = {"start_lr": 1e-4, "end_lr": 10.0, "num_steps": STEPS}


@pytest.fixture(scope="module")
def params():
    return init_mlp(0)


@pytest.fixture(scope="module")
def data():
    return make_data(STEPS)


@pytest.fixture(scope="module")
def single(params, data):
    """The reference sweep: stacked data, one compiled call."""
    return lr_find(params, ADAM, data, mlp_loss, options=QUIET, **SWEEP)


def test_curve_falls_then_diverges_and_stops_early(single):
    assert isinstance(single, LRFindResult)
    assert single.stop_reason in ("diverged", "non-finite loss")
    assert single.stop_step is not None and single.stop_step < STEPS - 1
    assert len(single.lrs) == len(single.losses) == single.stop_step + 1
    smoothed = single.smoothed_losses
    lowest = int(np.argmin(smoothed))
    assert 0 < lowest < single.stop_step
    assert smoothed[lowest] < 0.8 * smoothed[0]  # it learnt before it diverged
    assert single.losses[-1] > 2 * smoothed[lowest] or not np.isfinite(single.losses[-1])
    assert single.suggestion is not None
    assert single.lrs[0] <= single.suggestion <= single.lrs[-1]


def test_lrs_are_the_float64_schedule(params, data, single):
    planned = Settings(**SWEEP).learning_rates()
    assert single.lrs.dtype == np.float64
    np.testing.assert_array_equal(single.lrs, planned[: len(single.lrs)])
    # Presets and methods reach the settings; the schedule is data (no new program).
    fastai = lr_find(params, ADAM, data, mlp_loss, options=QUIET,
                     settings=Settings.preset_named("fastai", method="steep"), **SWEEP)
    assert not fastai.meta["compiled"]
    assert fastai.settings.preset == "fastai" and not fastai.settings.include_end
    assert fastai.settings.method == "steep"
    assert fastai.suggestion == fastai.suggestions["steep"].lr
    planned = Settings.preset_named("fastai", **SWEEP).learning_rates()
    np.testing.assert_array_equal(fastai.lrs, planned[: len(fastai.lrs)])
    assert fastai.lrs[-1] < single.lrs[-1] or len(fastai.lrs) != len(single.lrs)


def test_in_loop_stop_agrees_with_the_core_float64_rule(single):
    stop, code = find_stop(single.losses, ewa_smooth(single.losses, 0.98, True),
                           diverge_factor=4.0)
    assert code != STOP_NONE and stop == single.stop_step
    # The float32 rule inside the loop ended it at the same step: nothing ran past it.
    assert single.meta["steps_trained"] == single.stop_step + 1
    assert single.meta["in_loop_resumes"] == 0
    assert single.meta["program_calls"] == 1


def test_meta_records_times_versions_and_mode(single):
    meta = single.meta
    assert meta["backend"] == "jax" and meta["loop"] == "single"
    assert meta["chunk_size"] == STEPS and meta["data"] == "stacked"
    assert {"jax", "jaxlib", "optax", "numpy", "lrfind"} <= set(meta["versions"])
    assert meta["device"] == "cpu" and meta["devices"] == ["cpu:0"]
    assert meta["run_time_s"] > 0 and meta["wall_time_s"] >= meta["run_time_s"]
    assert meta["compile_time_s"] >= 0
    assert meta["lr_groups"] == [
        {"path": "<root>", "base_lr": pytest.approx(1e-3), "dtype": "float32"}
    ]
    assert meta["loss_dtype"] == "float32"


def test_result_saves_and_loads(single, tmp_path):
    path = tmp_path / "result.json"
    single.save(path)
    assert LRFindResult.load(path) == single


def test_deterministic(params, data, single):
    again = lr_find(params, ADAM, data, mlp_loss, options=QUIET, **SWEEP)
    np.testing.assert_array_equal(again.losses, single.losses)
    assert again.stop_step == single.stop_step and again.suggestions == single.suggestions


def test_second_call_with_the_same_shapes_does_not_recompile(params, data):
    clear_program_cache()
    traces = []

    def counted_loss(p, batch):
        traces.append(1)  # runs when traced, never when compiled code runs
        return mlp_loss(p, batch)

    first = lr_find(params, ADAM, data, counted_loss, options=QUIET, **SWEEP)
    traced = len(traces)
    assert traced >= 1 and first.meta["compiled"] and first.meta["compile_time_s"] > 0
    second = lr_find(params, ADAM, data, counted_loss, options=JaxOptions(progress=True),
                     **SWEEP)
    assert len(traces) == traced
    assert not second.meta["compiled"] and second.meta["compile_time_s"] == 0.0
    assert second.meta["chunk_size"] == DEFAULT_CHUNK_SIZE == 20
    # Another LR range is data, not a new program.
    third = lr_find(params, ADAM, data, counted_loss, options=QUIET, start_lr=1e-5,
                    end_lr=1.0, num_steps=STEPS)
    assert len(traces) == traced and not third.meta["compiled"]
    np.testing.assert_array_equal(second.losses, first.losses)


@pytest.mark.parametrize("chunk_size", [1, 7, 25])
def test_progress_and_chunking_give_identical_results(params, data, single, chunk_size):
    chunked = lr_find(params, ADAM, data, mlp_loss,
                      options=JaxOptions(progress=True, chunk_size=chunk_size), **SWEEP)
    assert chunked.meta["loop"] == "chunked" and chunked.meta["chunk_size"] == chunk_size
    np.testing.assert_array_equal(chunked.losses, single.losses)
    assert chunked.stop_step == single.stop_step and chunked.suggestions == single.suggestions
    assert chunked.meta["program_calls"] == -(-(single.stop_step + 1) // chunk_size)


def test_list_of_batches_gives_the_stacked_result(params, data, single):
    for progress in (False, True):
        listed = lr_find(params, ADAM, as_batches(data), mlp_loss,
                         options=JaxOptions(progress=progress, chunk_size=8), **SWEEP)
        assert listed.meta["data"] == "sequence"
        np.testing.assert_array_equal(listed.losses, single.losses)
        assert listed.stop_step == single.stop_step


def test_generator_and_dict_batches(params, data):
    inputs, labels = data

    def dict_loss(p, batch):
        return mlp_loss(p, (batch["x"], batch["y"]))

    stacked = lr_find(params, ADAM, {"x": inputs, "y": labels}, dict_loss, options=QUIET,
                      **SWEEP)
    generated = lr_find(params, ADAM,
                        ({"x": inputs[i], "y": labels[i]} for i in range(STEPS)), dict_loss,
                        options=JaxOptions(progress=False, chunk_size=16), **SWEEP)
    np.testing.assert_array_equal(generated.losses, stacked.losses)


def test_torch_dataloader_batches(params, data):
    torch = pytest.importorskip("torch")
    inputs, labels = data
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(inputs.reshape(-1, inputs.shape[-1])),
        torch.from_numpy(labels.reshape(-1)).long(),
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=inputs.shape[1], shuffle=False)
    result = lr_find(params, ADAM, loader, mlp_loss, options=QUIET, **SWEEP)
    reference = lr_find(params, ADAM, (inputs, labels.astype(np.int64)), mlp_loss,
                        options=QUIET, **SWEEP)
    np.testing.assert_array_equal(result.losses, reference.losses)


def test_short_data_is_cycled_with_a_warning(params, data):
    inputs, labels = data
    short = (inputs[:10], labels[:10])
    repeated = (np.concatenate([inputs[:10]] * 6), np.concatenate([labels[:10]] * 6))
    expected = lr_find(params, ADAM, repeated, mlp_loss, options=QUIET, **SWEEP)
    with pytest.warns(UserWarning,
                      match="train_data holds 10 batches, fewer than the 60 the runs read; "
                      "cycling"):
        stacked = lr_find(params, ADAM, short, mlp_loss, options=QUIET, **SWEEP)
    with pytest.warns(UserWarning,
                      match="train_data has 10 batches, fewer than the sweep needs; cycling"):
        listed = lr_find(params, ADAM, as_batches(short), mlp_loss,
                         options=JaxOptions(progress=False, chunk_size=8), **SWEEP)
    np.testing.assert_array_equal(stacked.losses, expected.losses)
    np.testing.assert_array_equal(listed.losses, expected.losses)


def test_one_shot_iterator_that_runs_out_ends_the_sweep(params, data):
    batches = iter(as_batches(data)[:25])
    with pytest.warns(UserWarning,
                      match="the sweep ended early: data exhausted after 25 steps"):
        result = lr_find(params, ADAM, batches, mlp_loss,
                         options=JaxOptions(progress=False, chunk_size=8),
                         start_lr=1e-5, end_lr=1e-3, num_steps=STEPS)
    assert result.stop_reason == "data exhausted after 25 steps"
    assert result.stop_step is None and len(result.losses) == 25
    assert np.all(np.isfinite(result.losses))


def test_user_arrays_are_untouched(params, data):
    before_params, before_data = host_copy(params), host_copy(data)
    device_data = jax.device_put(data)
    for progress in (False, True):
        lr_find(params, ADAM, device_data, mlp_loss, options=JaxOptions(progress=progress),
                **SWEEP)
    assert_tree_equal(before_params, params)
    assert_tree_equal(before_data, device_data)
    assert_tree_equal(before_data, data)


def test_factory_optimizer_is_injected_by_lrfind(params, data):
    result = lr_find(params, optax.adam, data, mlp_loss, options=QUIET, **SWEEP)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert result.meta["lr_groups"][0]["base_lr"] == 1.0
    again = lr_find(params, optax.adam, data, mlp_loss, options=QUIET, **SWEEP)
    assert not again.meta["compiled"]  # the wrapped factory is reused
    np.testing.assert_array_equal(again.losses, result.losses)


def test_stateful_form_gets_a_fresh_key_each_step(params, data):
    """loss_fn(params, model_state, batch, key): the key differs every micro-step and
    the returned model state is carried to the next step."""

    def noisy_loss(p, state, batch, key):
        noise = jax.random.uniform(key, ())
        return mlp_loss(p, batch) * 0.0 + noise + state["count"] * 0.0, {
            "count": state["count"] + 1
        }

    state = {"count": jnp.zeros((), jnp.int32)}
    kwargs = {"start_lr": 1e-7, "end_lr": 1e-6, "num_steps": 20,
              "settings": Settings(diverge_factor=1e9)}
    result = lr_find(params, ADAM, data, noisy_loss, model_state=state,
                     rng=jax.random.key(3), options=QUIET, **kwargs)
    expected = [float(jax.random.uniform(jax.random.fold_in(jax.random.key(3), m), ()))
                for m in range(20)]
    np.testing.assert_allclose(result.losses, expected, rtol=1e-6)
    assert len(set(result.losses.tolist())) == 20
    assert int(state["count"]) == 0

    def counting_loss(p, state, batch, key):
        assert key is None  # no rng given
        # The new state comes back as float32; the carry keeps it int32.
        return state["count"].astype(jnp.float32) + 1.0 + 0.0 * mlp_loss(p, batch), {
            "count": state["count"] + 1.0
        }

    counted = lr_find(params, ADAM, data, counting_loss, model_state=state,
                      options=JaxOptions(progress=True, chunk_size=6), **kwargs)
    np.testing.assert_array_equal(counted.losses, np.arange(1, 21))


def test_legacy_uint32_keys_work_like_typed_keys(params, data):
    def noisy(p, state, batch, key):
        return mlp_loss(p, batch) + jax.random.uniform(key, ()), state

    quiet = {"start_lr": 1e-7, "end_lr": 1e-6, "num_steps": 10,
             "settings": Settings(diverge_factor=1e9)}
    legacy = lr_find(params, ADAM, data, noisy, rng=jax.random.PRNGKey(5), options=QUIET,
                     **quiet)
    typed = lr_find(params, ADAM, data, noisy, rng=jax.random.wrap_key_data(
        jax.random.PRNGKey(5)), options=QUIET, **quiet)
    np.testing.assert_array_equal(legacy.losses, typed.losses)
    with pytest.raises(ValueError, match=r"single key, got a key array of shape \(2,\)"):
        lr_find(params, ADAM, data, noisy, rng=jax.random.split(jax.random.key(0)), **quiet)


def test_unhashable_functions_work_but_recompile(params, data):
    class Loss:
        __hash__ = None  # unhashable: no program reuse

        def __eq__(self, other):
            return isinstance(other, Loss)

        def __call__(self, p, batch):
            return mlp_loss(p, batch)

    first = lr_find(params, ADAM, data, Loss(), options=QUIET, num_steps=10)
    second = lr_find(params, ADAM, data, Loss(), options=QUIET, num_steps=10)
    assert first.meta["compiled"] and second.meta["compiled"]
    np.testing.assert_array_equal(first.losses, second.losses)


def test_an_early_in_loop_stop_hint_is_resumed_until_the_host_rule_fires(
    monkeypatch, params, data, single
):
    # The float32 hint fires at steps 5 and 6, where the float64 rule does not.
    patch_monitor(monkeypatch, lambda count, code: jnp.where(
        (count == 5) | (count == 6), 2, code))

    def other_loss(p, batch):  # a new function: a new program with the patch in it
        return mlp_loss(p, batch)

    result = lr_find(params, ADAM, data, other_loss, options=QUIET, **SWEEP)
    assert result.meta["in_loop_resumes"] == 2 and result.meta["program_calls"] == 3
    np.testing.assert_array_equal(result.losses, single.losses)
    assert result.stop_step == single.stop_step


def test_a_missed_in_loop_stop_is_caught_by_the_host(monkeypatch, params, data, single):
    patch_monitor(monkeypatch, lambda count, code: jnp.zeros_like(code))

    def another_loss(p, batch):
        return mlp_loss(p, batch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow after the divergence
        result = lr_find(params, ADAM, data, another_loss, options=QUIET, **SWEEP)
    assert result.meta["steps_trained"] == STEPS
    assert result.stop_step == single.stop_step
    np.testing.assert_array_equal(result.losses, single.losses)


def test_a_program_of_runs_vmaps_the_pure_loop_of_one_run(params, data):
    """The loop of one run is pure and vmaps over the carry and the per-run inputs (the
    key here): run r of a 2-run program equals the 1-run program given run r's key
    (what num_sweeps and mode="independent" build on, see test_jax_ensemble.py)."""
    from lrfind_core.plan import plan_sweeps
    from lrfind_jax.injection import find_lr_groups
    from lrfind_jax.runs import run_inputs, run_tables, start_runs
    from lrfind_jax.sweep import SweepSpec, loop_function

    def noisy(p, state, batch, key):
        return mlp_loss(p, batch) + 0.1 * jax.random.normal(key, ()), state

    opt_state = ADAM.init(params)
    groups = find_lr_groups(opt_state)
    stacked = jax.device_put(data)
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])

    def program(runs, rng):
        settings = Settings(start_lr=1e-5, end_lr=1e-2, num_steps=8, diverge_factor=1e9,
                            num_sweeps=runs)
        plan = plan_sweeps(settings)
        spec = SweepSpec(noisy, True, ADAM, (groups[0].leaf_index,), 1, plan.stop, runs=runs)
        inputs = run_inputs(plan, stacked, STEPS, run_tables(plan, groups), jax.random.key(9),
                            None)
        # Every run on the same batches, with its own key.
        inputs = inputs._replace(rng=rng, data_offset=np.zeros(runs, np.int32))
        carry = start_runs(plan, (params, opt_state, None), np.dtype(np.float32), False)
        return jax.jit(loop_function(spec))(carry, inputs)

    out = program(2, keys)
    assert out.losses.shape == (2, 8) and np.all(np.isfinite(out.losses))
    assert not np.array_equal(out.losses[0], out.losses[1])
    solo = program(1, keys[1:])
    assert solo.losses.shape == (1, 8)
    np.testing.assert_allclose(out.losses[1], solo.losses[0], rtol=1e-5)
    np.testing.assert_array_equal(out.step, [8, 8])
    assert_tree_equal(host_copy(params), params)


def test_host_check_folds_each_loss_once_and_skips_the_last_call(monkeypatch, params, data):
    """Chunked calls re-check only the new losses (linear in the sweep), and after
    a sweep's last call the host leaves the float64 rule to the result."""
    import lrfind_core.monitor

    folded = []
    original = lrfind_core.monitor.host_update

    def counting(state, loss, settings):
        folded.append(loss)
        return original(state, loss, settings)

    monkeypatch.setattr(lrfind_core.monitor, "host_update", counting)
    quiet = {"start_lr": 1e-5, "end_lr": 1e-3, "num_steps": 40}
    chunked = lr_find(params, ADAM, data, mlp_loss,
                      options=JaxOptions(progress=True, chunk_size=3), **quiet)
    assert chunked.meta["program_calls"] == 14 and chunked.stop_step is None
    assert folded == list(chunked.losses[:39])  # every loss once, in order; not the last call's
    folded.clear()
    lr_find(params, ADAM, data, mlp_loss, options=QUIET, **quiet)
    assert folded == []


def test_program_key_tells_python_scalars_from_numpy_scalars(data):
    """jax traces 1.1 (weakly typed) and np.float32(1.1) differently: a bf16 weight
    times a weak scalar stays bf16, times a float32 scalar becomes float32."""
    from lrfind_jax.sweep import _leaf_signature

    assert _leaf_signature(1.1) != _leaf_signature(np.float32(1.1))
    assert _leaf_signature(3) != _leaf_signature(np.int32(3))
    assert _leaf_signature(np.float32(1.1)) == _leaf_signature(np.float32(2.5))

    def loss(p, batch):
        return jnp.sum((p["w"] * p["s"] - batch[0][:, :2]) ** 2)

    w = (jnp.arange(2, dtype=jnp.float32) / 3 + 0.1).astype(jnp.bfloat16)
    sweep = {"options": QUIET, "num_steps": 6, "start_lr": 1e-4, "end_lr": 1e-2}
    clear_program_cache()
    strong = lr_find({"w": w, "s": np.float32(1.1)}, optax.sgd, data, loss, **sweep)
    clear_program_cache()
    weak = lr_find({"w": w, "s": 1.1}, optax.sgd, data, loss, **sweep)
    again = lr_find({"w": w, "s": np.float32(1.1)}, optax.sgd, data, loss, **sweep)
    assert again.meta["compiled"]  # not the weak program from the cache
    np.testing.assert_array_equal(again.losses, strong.losses)
    assert not np.array_equal(weak.losses, strong.losses)
