"""mode="search" in the torch backend: real candidate runs, exact restore, the same batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_helpers import (
    assert_restored,
    batches,
    capture,
    cross_entropy,
    make_setup,
    tiny_mlp,
)

from lrfind_torch import Settings, TorchOptions, lr_find

QUIET = TorchOptions(progress=False)
SEARCH = {"mode": "search", "training_steps": 60, "budget_steps": 150, "options": QUIET}


def search_case(seed: int = 0):
    torch.manual_seed(seed)
    model = tiny_mlp(dropout=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, optimizer, batches(40, seed=seed + 1), batches(6, seed=seed + 50)


@pytest.mark.parametrize("schedule", ["one_cycle", "constant"])
def test_a_search_trains_candidates_within_its_budget_and_restores_everything(schedule):
    model, optimizer, data, val = search_case()
    before = capture(model, optimizer)
    result = lr_find(model, optimizer, data, cross_entropy, val_data=val, for_schedule=schedule,
                     **SEARCH)
    assert_restored(before, model, optimizer)
    search = result.search
    assert search.schedule == schedule
    assert result.meta["steps_trained"] == search.sweep_steps + search.steps_trained <= 150
    assert np.all(search.horizons <= 60)
    assert np.isfinite(search.scores).sum() >= 3
    assert result.suggestion == search.lr
    assert search.lrs.min() <= search.lr <= search.lrs.max()
    assert result.meta["loss_kind"] == "train"  # the curve is the bracketing sweep
    assert result.meta["mode"] == "search"


def test_a_candidate_score_is_the_validation_loss_of_that_run_trained_by_hand():
    model, optimizer, data, val = search_case(seed=3)
    twin_model, _, _, _ = search_case(seed=3)
    settings = Settings(val_batches=len(val))
    result = lr_find(model, optimizer, data, cross_entropy, val_data=val, settings=settings,
                     for_schedule="constant", **SEARCH)
    lr, horizon, score = (result.search.lrs[0], int(result.search.horizons[0]),
                          result.search.scores[0])
    # the same run by hand: from the same weights, RNG and batches, at the constant LR
    torch.manual_seed(3)
    twin = tiny_mlp(dropout=0.1)
    twin.load_state_dict(twin_model.state_dict())
    hand = torch.optim.AdamW(twin.parameters(), lr=1e-3)
    for group in hand.param_groups:
        group["lr"] = float(np.float32(lr))
    torch.manual_seed(3)
    _ = tiny_mlp(dropout=0.1)  # the model draws from the RNG before the search runs
    twin.train()
    for inputs, target in data[:horizon]:
        hand.zero_grad(set_to_none=True)
        cross_entropy(twin(inputs), target).backward()
        hand.step()
    twin.eval()
    with torch.no_grad():
        expected = np.mean([float(cross_entropy(twin(x), y)) for x, y in val])
    assert score == pytest.approx(expected, rel=1e-6)


def test_a_search_repeats_bit_for_bit():
    results = []
    for _ in range(2):
        model, optimizer, data, val = search_case(seed=1)
        results.append(lr_find(model, optimizer, data, cross_entropy, val_data=val, **SEARCH))
    first, second = results
    assert first.search == second.search
    np.testing.assert_array_equal(first.losses, second.losses)


class FailingLoss:
    """Cross-entropy that raises on call ``fail_at`` (inside a candidate run)."""

    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("boom inside a candidate")
        return cross_entropy(output, target)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_inside_a_candidate_leaves_everything_as_it_was(error):
    setup = make_setup("adam", "cnn", "plain")
    before = capture(setup.model, setup.optimizer)
    loss = FailingLoss(fail_at=70)  # the sweep takes 30 steps; this is a candidate's step

    def failing(output, target):
        try:
            return loss(output, target)
        except RuntimeError:
            raise error("stop") from None

    with pytest.raises(error):
        lr_find(setup.model, setup.optimizer, setup.data, failing, val_data=setup.data[:4],
                **SEARCH)
    assert loss.calls >= 70
    assert_restored(before, setup.model, setup.optimizer)


def test_candidates_read_the_same_batches_from_a_one_shot_iterator():
    model, optimizer, data, val = search_case(seed=2)
    twin_model, twin_optimizer, _, _ = search_case(seed=2)
    from_list = lr_find(twin_model, twin_optimizer, data, cross_entropy, val_data=val, **SEARCH)
    from_iterator = lr_find(model, optimizer, iter(data * 3), cross_entropy, val_data=val,
                            **SEARCH)
    assert from_iterator.search == from_list.search


def test_without_val_data_held_out_batches_are_never_trained_on():
    model, optimizer, data, _ = search_case(seed=4)
    seen: list[tuple[int, bool]] = []

    def step_fn(model, batch):
        seen.append((id(batch[0]), model.training))  # validation runs in eval mode
        return cross_entropy(model(batch[0]), batch[1])

    with pytest.warns(UserWarning, match="no val_data: the search holds out the first 4 "):
        result = lr_find(model, optimizer, data, step_fn=step_fn, **SEARCH)
    held_out = {id(batch[0]) for batch in data[:4]}
    trained = [key for key, training in seen if training]
    validated = {key for key, training in seen if not training}
    assert len(trained) == result.meta["steps_trained"]
    assert held_out.isdisjoint(trained)
    assert validated == held_out
    assert result.search.held_out_batches == 4
    assert math.isfinite(result.search.lr)


@pytest.mark.parametrize("one_shot", [False, True])
def test_too_little_data_to_hold_out_is_a_value_error_and_restores(one_shot):
    model, optimizer, data, _ = search_case(seed=5)
    before = capture(model, optimizer)
    train = iter(data[:1]) if one_shot else data[:1]  # a generator's length is unknown
    with pytest.raises(ValueError, match="train_data holds 1 batches; the search holds out "):
        lr_find(model, optimizer, train, cross_entropy, **SEARCH)
    assert_restored(before, model, optimizer)


def test_a_one_shot_iterator_too_short_for_the_candidates_is_a_clear_error_and_restores():
    model, optimizer, data, val = search_case(seed=6)
    before = capture(model, optimizer)
    with pytest.raises(ValueError, match=r"train_data ran out in the search's candidate runs "
                                         r"\(data exhausted after \d+ steps\)"):
        lr_find(model, optimizer, iter(data[:5]), cross_entropy, val_data=val, **SEARCH)
    assert_restored(before, model, optimizer)
