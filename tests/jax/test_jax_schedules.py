"""one_cycle_schedule: optax's cosine one-cycle at the result's one-cycle LR."""

import numpy as np
import optax

from lrfind_core import LRFindResult
from lrfind_core.schedules import exponential_schedule
from lrfind_jax import one_cycle_schedule

LRS = exponential_schedule(1e-6, 10.0, 100)
STEPS = np.arange(100, dtype=np.float64)
RESULT = LRFindResult.from_curve(
    LRS, 2.0 - 1.5 / (1.0 + np.exp(-(STEPS - 40) / 5)) + np.maximum(0, STEPS - 70) ** 2 / 20
)


def test_the_schedule_equals_optax_by_hand():
    peak = RESULT.suggest(for_schedule="one_cycle").lr
    ours = one_cycle_schedule(RESULT, 60, pct_start=0.2)
    theirs = optax.cosine_onecycle_schedule(transition_steps=60, peak_value=peak, pct_start=0.2)
    values = [float(ours(step)) for step in range(61)]
    assert values == [float(theirs(step)) for step in range(61)]
    assert max(values) == np.float32(peak)


def test_lr_find_suggests_for_the_schedule_it_is_asked_for():
    import jax
    import jax.numpy as jnp

    from lrfind_jax import JaxOptions, lr_find

    def loss_fn(params, batch):
        inputs, targets = batch
        return jnp.mean((inputs @ params["w"] - targets) ** 2)

    inputs = jax.random.normal(jax.random.key(0), (40, 16, 4))
    data = (inputs, inputs @ jnp.arange(4.0))
    params = {"w": jnp.zeros(4)}
    options = {"num_steps": 40, "start_lr": 1e-4, "end_lr": 10.0,
               "options": JaxOptions(progress=False)}
    constant = lr_find(params, optax.sgd, data, loss_fn, for_schedule="constant", **options)
    default = lr_find(params, optax.sgd, data, loss_fn, **options)
    assert (constant.settings.for_schedule, default.settings.for_schedule) == (
        "constant", "one_cycle")
    np.testing.assert_array_equal(constant.losses, default.losses)
    assert constant.suggestion == default.suggest(for_schedule="constant").lr
