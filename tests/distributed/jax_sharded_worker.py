"""Worker for the sharded-JAX test: run with 4 forced host devices, print JSON results.

Runs the same sweep three ways: on one device, with the batch sharded over a
4-device data axis (params replicated), and with the hidden layer's params also
sharded over a model axis; prints the raw losses, stop steps and the shardings
the compiled sweep kept.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lrfind_jax import JaxOptions, lr_find

STEPS, BATCH = 40, 32


def init_params() -> dict:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    return {
        "w1": jax.random.normal(keys[0], (8, 64)) * 0.3,
        "b1": jnp.zeros(64),
        "w2": jax.random.normal(keys[1], (64, 3)) * 0.3,
        "b2": jnp.zeros(3),
    }


def loss_fn(params: dict, batch: tuple) -> jax.Array:
    inputs, labels = batch
    hidden = jnp.tanh(inputs @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(STEPS, BATCH, 8)).astype(np.float32)
    labels = rng.integers(0, 3, size=(STEPS, BATCH)).astype(np.int32)
    return inputs, labels


def compiled_shardings() -> dict:
    """The shardings the last compiled program takes its params and data with.

    A program of several runs carries a leading run axis, which must not be split;
    a single run carries the params at their own rank. The params' shardings are
    given at the params' own rank either way.
    """
    from lrfind_jax import sweep as sweep_module

    program = next(reversed(sweep_module._programs.values()))
    carry_shardings, inputs_shardings = program.run.input_shardings[0]
    carry_info, _ = program.run.args_info[0]

    def describe(sharding: object) -> str:
        return str(getattr(sharding, "spec", "single device"))

    def at_params_rank(name: str, rank: int) -> str:
        sharding = carry_shardings.params[name]
        spec = getattr(sharding, "spec", None)
        if spec is None:
            return "single device"
        spec = tuple(spec)
        if len(carry_info.params[name].shape) == rank + 1:
            assert not spec or spec[0] is None, f"the run axis is split: {spec}"
            spec = spec[1:]
        spec = spec + (None,) * (rank - len(spec))
        return "P()" if all(axis is None for axis in spec) else str(P(*spec))

    return {
        "w1": at_params_rank("w1", 2),
        "w2": at_params_rank("w2", 2),
        "inputs": describe(inputs_shardings.data[0]),
    }


def sweep(params: dict, batches: tuple) -> dict:
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    result = lr_find(
        params,
        optimizer,
        batches,
        loss_fn,
        num_steps=STEPS,
        start_lr=1e-4,
        end_lr=100.0,
        options=JaxOptions(progress=False),
    )
    return {
        "losses": result.losses.tolist(),
        "stop_step": result.stop_step,
        "shardings": compiled_shardings(),
        "device": result.meta["device"],
        "devices": result.meta["devices"],
    }


def main() -> None:
    assert jax.device_count() == 4, jax.devices()
    inputs, labels = data()
    params = init_params()
    report = {"single": sweep(params, (jnp.asarray(inputs), jnp.asarray(labels)))}

    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch_sharding = NamedSharding(mesh, P(None, "data"))  # step axis whole, batch split
    sharded = (jax.device_put(inputs, batch_sharding), jax.device_put(labels, batch_sharding))
    replicated = jax.device_put(params, NamedSharding(mesh, P()))
    before = jax.tree_util.tree_map(np.asarray, replicated)
    report["data_parallel"] = sweep(replicated, sharded)
    report["params_unchanged"] = all(
        np.array_equal(a, np.asarray(b))
        for a, b in zip(
            jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(replicated), strict=True
        )
    )
    report["params_sharding_kept"] = str(replicated["w1"].sharding.spec)

    mesh2 = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
    model_sharded = dict(replicated)
    model_sharded["w1"] = jax.device_put(params["w1"], NamedSharding(mesh2, P(None, "model")))
    model_sharded["b1"] = jax.device_put(params["b1"], NamedSharding(mesh2, P("model")))
    model_sharded["w2"] = jax.device_put(params["w2"], NamedSharding(mesh2, P("model", None)))
    model_sharded["b2"] = jax.device_put(params["b2"], NamedSharding(mesh2, P()))
    batch2 = NamedSharding(mesh2, P(None, "data"))
    report["model_parallel"] = sweep(
        model_sharded, (jax.device_put(inputs, batch2), jax.device_put(labels, batch2))
    )
    # data committed to one device beside params replicated over four: named, not JAX's error
    first = jax.devices()[0]
    one_device = (jax.device_put(inputs, first), jax.device_put(labels, first))
    try:
        sweep(replicated, one_device)
        report["misplaced_data"] = None
    except ValueError as error:
        report["misplaced_data"] = str(error)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
