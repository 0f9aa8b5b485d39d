"""Quickstart for JAX/optax: the classic sweep and the search, on synthetic data.

    pip install ".[jax]"
    python examples/quickstart_jax.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrfind_jax import lr_find, one_cycle_schedule

rng = np.random.default_rng(0)
inputs = rng.normal(size=(2048, 20)).astype(np.float32)
labels = (inputs[:, :5].sum(axis=1) > 0).astype(np.int32)
# Stacked by step: 24 batches of 64 to train on, 2 of 256 to validate on.
train = (inputs[:1536].reshape(24, 64, 20), labels[:1536].reshape(24, 64))
val = (inputs[1536:].reshape(2, 256, 20), labels[1536:].reshape(2, 256))

key_1, key_2 = jax.random.split(jax.random.key(0))
params = {"w1": jax.random.normal(key_1, (20, 64)) * 0.2, "b1": jnp.zeros(64),
          "w2": jax.random.normal(key_2, (64, 2)) * 0.2, "b2": jnp.zeros(2)}


def loss_fn(params, batch):
    x, y = batch
    logits = jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


# The classic range test, compiled end to end; optax.adamw is injected by lrfind.
result = lr_find(params, optax.adamw, train, loss_fn)
print("classic sweep:", result)

# The search: candidates trained under optax's one-cycle schedule, judged on val.
training_steps = 240
searched = lr_find(params, optax.adamw, train, loss_fn, mode="search", val_data=val,
                   training_steps=training_steps)
print("search:", searched.suggestion, "as good between", searched.search.near_best)

# Train at the answer with optax's own one-cycle schedule.
optimizer = optax.adamw(one_cycle_schedule(searched, total_steps=training_steps))
state = optimizer.init(params)


@jax.jit
def train_step(params, state, batch):
    grads = jax.grad(loss_fn)(params, batch)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state


for step in range(training_steps):
    batch = jax.tree_util.tree_map(lambda leaf, i=step % 24: leaf[i], train)
    params, state = train_step(params, state, batch)
val_loss = np.mean([float(loss_fn(params, (val[0][i], val[1][i]))) for i in range(2)])
print(f"validation loss after training: {val_loss:.4f}")
