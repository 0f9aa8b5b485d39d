"""torch and JAX give the same curves, the same stop and the same suggestions.

Every case of :func:`parity_cases.cases` sweeps the same model (torch weights
converted to Flax nnx), the same batches in the same order and the same float32
LRs with ``lrfind_torch.lr_find`` and ``lrfind_jax.lr_find_nnx``, and
:func:`parity_checks.assert_same_result` compares the results. The measured
tolerances per case are in ``docs/parity.md`` (``python tests/parity/measure_parity.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from parity_cases import (
    MODELS,
    SWEEP,
    Case,
    cases,
    nnx_cross_entropy,
    optax_transformation,
    run_jax,
    run_torch,
    torch_cross_entropy,
)
from parity_checks import (
    HEAD_RTOL,
    STOCK_OPTAX_ADAM,
    assert_same_result,
    assert_same_suggestions,
    flat_between,
    read_point,
)

from lrfind_core import LRFindResult
from lrfind_jax import JaxOptions, lr_find
from lrfind_jax.injection import find_lr_groups, lr_tables

SUITE = cases()


def _ids(group: str) -> list[str]:
    return [case.id for case in SUITE[group]]


@pytest.mark.parametrize("case", SUITE["matrix"], ids=_ids("matrix"))
def test_models_and_optimizers(case: Case) -> None:
    assert_same_result(run_torch(case), run_jax(case))


@pytest.mark.parametrize("case", SUITE["param_groups"], ids=_ids("param_groups"))
def test_two_param_groups(case: Case) -> None:
    applied: list[list[float]] = []
    torch_result, jax_result = run_torch(case, applied_lrs=applied), run_jax(case)
    assert_same_result(torch_result, jax_result)
    # The reference group (result.lrs) is the body on both sides.
    groups = jax_result.meta["lr_groups"]
    assert [group["base_lr"] for group in groups] == pytest.approx(case.base_lrs, rel=1e-7)
    assert "a_body" in groups[0]["path"] and "b_head" in groups[1]["path"]
    # Both apply the very same float32 LRs to both groups at every step.
    _, model = MODELS[case.model].build(case.seed)
    transformation = optax_transformation(case.optimizer, case.base_lrs)
    opt_state = transformation.init(nnx.state(model, nnx.Param))
    tables = lr_tables(torch_result.settings.learning_rates(), find_lr_groups(opt_state))
    jax_lrs = np.stack([table.astype(np.float64) for table in tables], axis=1)
    np.testing.assert_array_equal(np.array(applied), jax_lrs[: len(applied)])
    assert len(applied) == len(torch_result.losses)
    assert np.all(np.array(applied, dtype=np.float32) == np.array(applied))


@pytest.mark.parametrize("case", SUITE["accumulation"], ids=_ids("accumulation"))
def test_gradient_accumulation(case: Case) -> None:
    torch_result, jax_result = run_torch(case), run_jax(case)
    assert isinstance(optax_transformation(case.optimizer, case.base_lrs,
                                           case.accumulation_steps), optax.MultiSteps)
    assert torch_result.meta["accumulation_steps"] == case.accumulation_steps
    assert jax_result.meta["accumulation_steps"] == case.accumulation_steps
    assert_same_result(torch_result, jax_result)


@pytest.mark.parametrize("case", SUITE["stock_optax"], ids=_ids("stock_optax"))
def test_stock_optax_adam_gives_the_same_stop_and_suggestions(case: Case) -> None:
    """Stock optax.adam/adamw compute Adam's bias correction in float32 (torch: float64):
    the curves drift apart up to 1e-3 before the divergence, yet stop at the same step
    and give the same suggestions."""
    assert_same_result(run_torch(case), run_jax(case), STOCK_OPTAX_ADAM)


@pytest.mark.parametrize("case", SUITE["presets"], ids=_ids("presets"))
def test_presets(case: Case) -> None:
    torch_result, jax_result = run_torch(case), run_jax(case)
    assert torch_result.settings.preset == jax_result.settings.preset == case.preset
    assert_same_result(torch_result, jax_result)


@pytest.mark.parametrize("case", SUITE["validation"], ids=_ids("validation"))
def test_validation_curves(case: Case) -> None:
    """val_data on both sides: a point every val_every steps, the mean eval-mode loss
    over the same validation batches."""
    torch_result, jax_result = run_torch(case), run_jax(case)
    for result in (torch_result, jax_result):
        assert result.meta["loss_kind"] == "validation"
        assert result.meta["val_every"] == case.val_every
        assert result.planned_points == SWEEP["num_steps"] // case.val_every
    assert_same_result(torch_result, jax_result)


@pytest.mark.parametrize("case", SUITE["search"], ids=_ids("search"))
def test_searches_measure_the_same_candidates_and_choose_the_same_lr(case: Case) -> None:
    """A constant-LR search: the same bracketing sweep, the same candidates, the same
    scores (the validation loss after each short run) and the same choice."""
    torch_result, jax_result = run_torch(case), run_jax(case)
    mine, theirs = torch_result.search, jax_result.search
    assert mine.schedule == theirs.schedule == "constant"
    np.testing.assert_allclose(torch_result.losses, jax_result.losses, rtol=1e-4)
    np.testing.assert_array_equal(mine.horizons, theirs.horizons)
    np.testing.assert_allclose(mine.lrs, theirs.lrs, rtol=1e-12)
    np.testing.assert_allclose(mine.scores, theirs.scores, rtol=1e-4)
    assert mine.lr == pytest.approx(theirs.lr, rel=1e-3)
    for result in (torch_result, jax_result):
        assert result.meta["steps_trained"] <= 120
        assert result.suggestion == result.search.lr


SHARED_META = {
    "backend", "versions", "device", "devices", "mode", "num_sweeps", "accumulation_steps",
    "loss_kind", "val_every", "runs", "steps_trained", "end_reasons", "skipped_steps",
    "run_time_s", "wall_time_s",
}
TORCH_META = {
    "world_size", "sync_every", "autocast_dtype", "snapshot", "train_mode", "snapshot_time_s",
    "restore_time_s",
}
JAX_META = {
    "loss_dtype", "lr_groups", "compiled", "execution", "compile_time_s", "loop", "chunk_size",
    "data", "program_calls", "in_loop_resumes", "runs_one_by_one",
}
"""result.meta's keys: the same in both backends, apart from the backend-only facts."""
FACTS = ("mode", "num_sweeps", "accumulation_steps", "loss_kind", "val_every", "runs",
         "steps_trained", "end_reasons", "skipped_steps")
"""Shared facts of one run that do not depend on the framework."""


@pytest.mark.parametrize("case", [Case("mlp", "sgd", 0), Case("mlp", "adam", 1, val_every=2)],
                         ids=lambda case: case.id)
def test_both_backends_record_the_same_meta_keys(case: Case) -> None:
    torch_result, jax_result = run_torch(case), run_jax(case)
    assert set(torch_result.meta) == SHARED_META | TORCH_META
    assert set(jax_result.meta) == SHARED_META | JAX_META
    # In the same order: the shared facts, the backend's own, the times.
    shared = [[key for key in result.meta if key in SHARED_META]
              for result in (torch_result, jax_result)]
    assert shared[0] == shared[1]
    assert (torch_result.meta["backend"], jax_result.meta["backend"]) == ("torch", "jax")
    assert torch_result.meta["device"] == jax_result.meta["device"] == "cpu"
    for key in FACTS:
        assert torch_result.meta[key] == jax_result.meta[key], key
    assert torch_result.meta["versions"]["lrfind"] == jax_result.meta["versions"]["lrfind"]
    # Both stopped at their stop point: every step up to it was trained, none after it.
    assert torch_result.stop_step == jax_result.stop_step is not None
    assert torch_result.meta["steps_trained"] == (case.val_every or 1) * (
        torch_result.stop_step + 1)


# ------------------------------------------------------- the converted model itself


def _torch_grads_in_flax_layout(name: str, source: torch.nn.Module) -> dict:
    """torch's gradients converted like the weights (the converters are linear)."""
    pair = MODELS[name]
    holder = pair.torch_model()
    with torch.no_grad():
        for param, grad_of in zip(holder.parameters(), source.parameters(), strict=True):
            param.copy_(grad_of.grad)
    target = pair.flax_model(nnx.Rngs(0))
    pair.convert(holder, target)
    return nnx.to_pure_dict(nnx.state(target, nnx.Param))


@pytest.mark.parametrize("name", list(MODELS))
def test_converted_model_gives_the_same_loss_and_gradients(name: str) -> None:
    """The first step of every sweep: one forward and backward pass in train mode."""
    pair = MODELS[name]
    source, target = pair.build(seed=5)
    source.train()
    inputs, labels = pair.data(5, 1)
    loss = torch_cross_entropy(
        source(torch.from_numpy(inputs[0])), torch.from_numpy(labels[0].astype(np.int64))
    )
    loss.backward()
    expected = _torch_grads_in_flax_layout(name, source)

    graphdef, params, rest = nnx.split(target, nnx.Param, ...)

    def flax_loss(p: nnx.State) -> jax.Array:
        module = nnx.merge(graphdef, p, rest, copy=True)
        return nnx_cross_entropy(module, (pair.to_flax_inputs(inputs[0]), labels[0]))

    value, grads = jax.jit(jax.value_and_grad(flax_loss))(params)
    assert float(value) == pytest.approx(loss.item(), rel=HEAD_RTOL)
    grads = nnx.to_pure_dict(grads)
    flat_expected = jax.tree_util.tree_leaves_with_path(expected)
    flat_grads = jax.tree_util.tree_leaves(grads)
    assert len(flat_expected) == len(flat_grads)
    # Relative to the largest gradient: some are zero up to rounding (the attention key
    # bias: the softmax ignores a shift of all scores), and their noise differs.
    scale = max(float(np.max(np.abs(want))) for _, want in flat_expected)
    for (path, want), got in zip(flat_expected, flat_grads, strict=True):
        np.testing.assert_allclose(
            np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6 * scale,
            err_msg=jax.tree_util.keystr(path),
        )


# ------------------------------------------- the plain check of the JAX backend issue


def _mlp_params_from_torch(module: torch.nn.Module) -> dict[str, dict[str, jax.Array]]:
    return {
        name: {
            "kernel": jnp.asarray(getattr(module, name).weight.detach().numpy().T),
            "bias": jnp.asarray(getattr(module, name).bias.detach().numpy()),
        }
        for name in ("fc1", "fc2", "head")
    }


def mlp_loss(params: dict[str, dict[str, jax.Array]], batch: tuple) -> jax.Array:
    """The parity MLP as a pure function, for the functional ``lrfind_jax.lr_find``."""
    inputs, labels = batch
    hidden = inputs
    for name in ("fc1", "fc2"):
        hidden = jax.nn.relu(hidden @ params[name]["kernel"] + params[name]["bias"])
    logits = hidden @ params["head"]["kernel"] + params["head"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_weights_from_torch_give_torch_losses(seed: int, optimizer: str) -> None:
    """The same MLP weights converted from torch and the same batches: the functional
    ``lrfind_jax.lr_find`` records the raw losses of ``lrfind_torch.lr_find`` within
    1e-5 up to the divergence, and stops at the same step."""
    case = Case("mlp", optimizer, seed)
    torch.manual_seed(seed)
    params = _mlp_params_from_torch(MODELS["mlp"].torch_model())
    jax_result = lr_find(
        params, optax_transformation(optimizer, case.base_lrs), case.batches(), mlp_loss,
        options=JaxOptions(progress=False), **case.sweep(),
    )
    torch_result = run_torch(case)
    assert_same_result(torch_result, jax_result)
    # The nnx adapter runs the same computation as the pure function.
    np.testing.assert_allclose(run_jax(case).losses, jax_result.losses, rtol=HEAD_RTOL)


# ---------------------------------------------------- the suggestion index rule itself


def _curve(values: list[float]) -> LRFindResult:
    lrs = np.geomspace(1e-4, 1.0, len(values))
    return LRFindResult.from_curve(
        lrs, values, beta=0.0, methods=("minimum",), method="minimum"
    )


def _bowl(bottom: tuple[float, float]) -> list[float]:
    return [3.0 - 0.1 * i for i in range(10)] + list(bottom) + [2.2, 2.6, 3.0, 3.4, 3.8, 4.2]


def test_a_suggestion_one_point_apart_passes_only_on_a_flat_stretch() -> None:
    flat_a, flat_b = _curve(_bowl((2.0, 2.0001))), _curve(_bowl((2.0001, 2.0)))
    # minimum reads the curve at its lowest point (10 or 11) and points a decade lower.
    a, b = flat_a.suggest("minimum"), flat_b.suggest("minimum")
    assert abs(a.index - b.index) == 1
    assert (read_point(flat_a, "minimum", a), read_point(flat_b, "minimum", b)) == (10, 11)
    assert flat_between(flat_a.smoothed_losses, 10, 11)
    assert_same_suggestions(flat_a, flat_b)
    steep_a, steep_b = _curve(_bowl((2.0, 2.1))), _curve(_bowl((2.1, 2.0)))
    assert not flat_between(steep_a.smoothed_losses, 10, 11)
    with pytest.raises(AssertionError, match="not flat"):
        assert_same_suggestions(steep_a, steep_b)


# ------------------------------------------------------------- matmul precision (GPU)


def test_matmul_precision_reaches_the_compiled_sweep() -> None:
    case = Case("mlp", "sgd", 0)
    run_jax(case)  # compiled, or reused, under the default precision
    with jax.default_matmul_precision("highest"):
        result = run_jax(case)
    assert result.meta["compiled"], "reused a program compiled under another matmul precision"


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs JAX on a GPU")
def test_gpu_parity_with_highest_matmul_precision() -> None:
    """On GPUs, JAX float32 matmuls default to TF32 (torch's do not:
    torch.backends.cuda.matmul.allow_tf32 is False); "highest" restores parity."""
    case = Case("transformer", "adam", 0)
    torch_result = run_torch(case)  # on the CPU
    with jax.default_matmul_precision("highest"):
        assert_same_result(torch_result, run_jax(case))
