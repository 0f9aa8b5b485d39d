"""lr_find_trainer on a tiny BERT built from a config (random weights, nothing
downloaded), on a synthetic task: the trainer comes back exactly, the suggestion is
for the trainer's schedule, bad input is refused."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch_helpers import assert_restored, assert_rng_same, assert_same, capture, rng_states
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
    get_constant_schedule,
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)
from transformers.trainer_utils import SchedulerType

from lrfind_core.result import LRFindResult
from lrfind_torch import TorchOptions
from lrfind_torch.integrations import huggingface
from lrfind_torch.integrations.huggingface import SCHEDULES, lr_find_trainer

QUIET = TorchOptions(progress=False)
SWEEP = {"start_lr": 1e-5, "end_lr": 10.0, "num_steps": 20, "options": QUIET}


class TokenTask(torch.utils.data.Dataset):
    """Sequences of 8 tokens; the label says whether token 7 occurs (learnable in a few
    dozen steps)."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(0, 32, (size, 8), generator=generator)
        self.labels = (self.tokens == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[index], "labels": self.labels[index]}


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=8, num_labels=2)
    return BertForSequenceClassification(config)


def make_trainer(folder: Path, train: bool = True, **arguments: Any) -> Trainer:
    """A Trainer for the tiny BERT; ``arguments`` override the TrainingArguments."""
    settings = {"per_device_train_batch_size": 16, "per_device_eval_batch_size": 16,
                "learning_rate": 1e-3, "max_steps": 40, "seed": 0, **arguments}
    args = TrainingArguments(output_dir=str(folder), report_to="none", use_cpu=True,
                             save_strategy="no", disable_tqdm=True, **settings)
    return Trainer(model=tiny_bert(), args=args, train_dataset=TokenTask(128, 0) if train else None,
                   eval_dataset=TokenTask(64, 1))


def trainer_attributes(trainer: Trainer) -> dict[str, Any]:
    """The trainer's attributes by identity, and its accelerator's prepared loaders."""
    return {
        "attributes": {key: id(value) for key, value in vars(trainer).items()},
        "prepared_loaders": [id(x) for x in trainer.accelerator._dataloaders],
        "optimizer": trainer.optimizer,
    }


def run_and_check_restored(trainer: Trainer, **keywords: Any) -> LRFindResult:
    """lr_find_trainer, then check the model, the trainer's optimizer if it has one, the
    RNGs and the trainer's attributes are as before."""
    model, optimizer = trainer.model, trainer.optimizer
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    training = [module.training for module in model.modules()]
    rng = rng_states()
    before = None if optimizer is None else capture(model, optimizer)
    attributes = trainer_attributes(trainer)
    result = lr_find_trainer(trainer, **keywords)
    assert_same(weights, dict(model.state_dict()), "model.state_dict()")
    assert [module.training for module in model.modules()] == training
    assert_rng_same(rng)
    if before is not None:
        assert_restored(before, model, optimizer)
    assert trainer_attributes(trainer) == attributes
    return result


def schedule_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "lr_find_trainer:" in str(w.message)]


def test_sweep_restores_the_trainer_and_says_which_schedule_it_assumes(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, warmup_steps=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_and_check_restored(trainer, **SWEEP)
    assert math.isfinite(result.suggestion) and 1e-5 < result.suggestion < 10.0
    assert len(result.lrs) == 20
    facts = result.meta["huggingface"]
    assert facts["lr_scheduler_type"] == "linear"
    assert facts["for_schedule"] == "one_cycle" and facts["schedule_exact"] is False
    assert result.settings.for_schedule == "one_cycle"
    assert facts["optimizer"] == "trainer.create_optimizer() (AdamW), discarded after"
    assert facts["max_grad_norm"] == 1.0 and facts["planned_steps"] == 40
    (message,) = schedule_warnings(caught)
    assert "for_schedule='one_cycle'" in message and "lr_scheduler_type='linear'" in message
    assert message == facts["schedule_note"]
    assert trainer.optimizer is None


def test_training_after_lr_find_is_the_training_without_it(tmp_path: Path) -> None:
    untouched = make_trainer(tmp_path / "a", max_steps=3)
    untouched.train()
    probed = make_trainer(tmp_path / "b", max_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr_find_trainer(probed, **SWEEP)
    probed.train()
    assert_same(dict(untouched.model.state_dict()), dict(probed.model.state_dict()), "weights")


def test_constant_schedule_is_measured_exactly_without_a_warning(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, lr_scheduler_type="constant")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = lr_find_trainer(trainer, **SWEEP)
    assert schedule_warnings(caught) == []
    assert result.settings.for_schedule == "constant"
    facts = result.meta["huggingface"]
    assert facts["for_schedule"] == "constant" and facts["schedule_exact"] is True
    assert facts["schedule_note"] == (
        "the suggestion is for the trainer's lr_scheduler_type='constant'")
    assert result.suggestion == result.suggest(for_schedule="constant").lr


def test_for_schedule_or_a_preset_overrides_the_trainer_schedule(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asked = lr_find_trainer(trainer, for_schedule="constant", **SWEEP)
        preset = lr_find_trainer(trainer, settings="fastai", **SWEEP)
    assert schedule_warnings(caught) == []
    assert asked.settings.for_schedule == "constant"
    assert "as asked" in asked.meta["huggingface"]["schedule_note"]
    assert preset.settings.for_schedule == "curve"


def test_every_transformers_schedule_has_a_reading() -> None:
    assert {kind.value for kind in SchedulerType} <= set(SCHEDULES)


def test_search_scores_on_the_eval_dataloader_under_the_trainer_schedule_shape(
    tmp_path: Path,
) -> None:
    trainer = make_trainer(tmp_path, warmup_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_and_check_restored(trainer, mode="search", budget_steps=60, options=QUIET)
    assert math.isfinite(result.suggestion) and result.suggestion > 0
    facts = result.meta["huggingface"]
    assert facts["val_data"] == "trainer.get_eval_dataloader()"
    assert result.settings.training_steps == 40  # the trainer's max_steps
    assert facts["one_cycle_options"] == {
        "pct_start": 0.1, "anneal_strategy": "linear", "cycle_momentum": False,
        "div_factor": 1e4, "final_div_factor": 1.0,
    }
    assert "OneCycleLR shaped like 'linear'" in facts["schedule_note"]


def test_arguments_accumulation_clipping_and_precision_are_used(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, gradient_accumulation_steps=2, max_grad_norm=0.5, bf16=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_and_check_restored(trainer, **SWEEP)
    assert result.settings.accumulation_steps == 2
    assert result.meta["huggingface"]["max_grad_norm"] == 0.5
    assert result.meta["huggingface"]["mixed_precision"] == "bf16"
    assert result.meta["autocast_dtype"] == "torch.bfloat16"


def test_the_trainer_optimizer_and_a_warmup_from_zero(tmp_path: Path) -> None:
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, 5, 50)  # sets the LR to 0
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16,
                             max_steps=40, report_to="none", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=TokenTask(128, 0),
                      optimizers=(optimizer, scheduler))
    assert optimizer.param_groups[0]["lr"] == 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_and_check_restored(trainer, **SWEEP)
    assert trainer.optimizer is optimizer and optimizer.param_groups[0]["lr"] == 0.0
    assert result.meta["huggingface"]["optimizer"] == "trainer.optimizer (AdamW)"
    assert any("initial_lr" in str(w.message) for w in caught)
    assert math.isfinite(result.suggestion)


def test_bad_input_is_refused_before_anything_changes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"trainer must be a transformers\.Trainer, got Module"):
        lr_find_trainer(torch.nn.Module())
    no_data = make_trainer(tmp_path, train=False)
    with pytest.raises(ValueError, match="no train_dataset"):
        lr_find_trainer(no_data)
    trainer = make_trainer(tmp_path)
    attributes = trainer_attributes(trainer)
    with pytest.raises(TypeError, match=r"options must be lrfind_torch\.TorchOptions"):
        lr_find_trainer(trainer, options={"progress": False})
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'loss_fn'"):
        lr_find_trainer(trainer, loss_fn=torch.nn.functional.cross_entropy)
    # Refused by lr_find after the trainer built its optimizer and loader: put back too.
    with pytest.raises(ValueError, match="training_steps belongs to mode='search'"):
        lr_find_trainer(trainer, training_steps=10, options=QUIET)
    assert trainer_attributes(trainer) == attributes and trainer.optimizer is None


def passed_scheduler_trainer(folder: Path, make_scheduler: Callable[[Any], Any]) -> Trainer:
    """A Trainer given ``optimizers=(AdamW, make_scheduler(AdamW))``; its
    ``lr_scheduler_type`` stays the default ``"linear"``, which that scheduler overrides."""
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    args = TrainingArguments(output_dir=str(folder), per_device_train_batch_size=16,
                             max_steps=40, report_to="none", use_cpu=True, disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=TokenTask(128, 0),
                   optimizers=(optimizer, make_scheduler(optimizer)))


def constant_lambda(optimizer: Any) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def test_a_passed_scheduler_lrfind_cannot_read_is_refused_before_any_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    trainer = passed_scheduler_trainer(tmp_path, constant_lambda)
    model, optimizer, scheduler = trainer.model, trainer.optimizer, trainer.lr_scheduler
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    before, rng = capture(model, optimizer), rng_states()
    scheduled = (scheduler.state_dict(), [group["lr"] for group in optimizer.param_groups])
    attributes = trainer_attributes(trainer)
    calls: list[str] = []
    monkeypatch.setattr(Trainer, "compute_loss", lambda *a, **k: calls.append("loss"))
    monkeypatch.setattr(Trainer, "get_train_dataloader", lambda *a: calls.append("data"))
    with pytest.raises(ValueError, match=r"optimizers= \(LambdaLR\).*pass for_schedule="):
        lr_find_trainer(trainer, **SWEEP)
    with pytest.raises(ValueError, match="'constant' if it holds the LR"):
        lr_find_trainer(trainer, mode="search", budget_steps=60, options=QUIET)
    assert calls == []
    assert_same(weights, dict(model.state_dict()), "model.state_dict()")
    assert_restored(before, model, optimizer)
    assert_rng_same(rng)
    assert (scheduler.state_dict(), [g["lr"] for g in optimizer.param_groups]) == scheduled
    assert trainer_attributes(trainer) == attributes and trainer.lr_scheduler is scheduler


def test_for_schedule_measures_under_a_passed_scheduler_without_naming_lr_scheduler_type(
    tmp_path: Path,
) -> None:
    trainer = passed_scheduler_trainer(tmp_path, constant_lambda)
    scheduler = trainer.lr_scheduler
    state = scheduler.state_dict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_and_check_restored(trainer, for_schedule="constant", **SWEEP)
    assert not any("lr_scheduler_type" in str(w.message) for w in caught)
    assert scheduler.state_dict() == state and trainer.lr_scheduler is scheduler
    facts = result.meta["huggingface"]
    assert facts["passed_scheduler"] == "LambdaLR" and facts["for_schedule"] == "constant"
    assert facts["schedule_note"] == (
        "the suggestion is for for_schedule='constant', as asked, not read from the "
        "scheduler passed to the Trainer (LambdaLR)")
    assert result.suggestion == result.suggest(for_schedule="constant").lr


def sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)


class HalvingStepLR(torch.optim.lr_scheduler.StepLR):
    """A subclass: it may schedule otherwise than its base, so it is not read."""


DECAYS = "it decays from its first LR without a warmup"

# name -> (the scheduler for an optimizer, and (for_schedule, the start of why it is
# approximate, or None where exact), or None where it cannot be read)
PASSED_READINGS: dict[str, tuple[Callable[[Any], Any], tuple[str, str | None] | None]] = {
    "transformers constant": (get_constant_schedule, ("constant", None)),
    "transformers constant_with_warmup": (lambda o: get_constant_schedule_with_warmup(o, 4),
                                          SCHEDULES["constant_with_warmup"]),
    "transformers linear": (lambda o: get_linear_schedule_with_warmup(o, 4, 40),
                            SCHEDULES["linear"]),
    "transformers cosine": (lambda o: get_cosine_schedule_with_warmup(o, 4, 40),
                            SCHEDULES["cosine"]),
    "OneCycleLR": (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=40),
                   ("one_cycle", None)),
    "ConstantLR factor 1": (lambda o: torch.optim.lr_scheduler.ConstantLR(o, 1.0, 4),
                            ("constant", None)),
    "ConstantLR warmup": (lambda o: torch.optim.lr_scheduler.ConstantLR(o, 0.5, 4),
                          SCHEDULES["constant_with_warmup"]),
    "LinearLR warmup": (lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 4),
                        SCHEDULES["constant_with_warmup"]),
    "LinearLR decay": (lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.1, 40),
                       ("constant", DECAYS)),
    "CosineAnnealingLR": (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 40),
                          ("constant", DECAYS)),
    "StepLR": (lambda o: torch.optim.lr_scheduler.StepLR(o, 10),
               ("constant", DECAYS)),
    "ReduceLROnPlateau": (torch.optim.lr_scheduler.ReduceLROnPlateau,
                          SCHEDULES["reduce_lr_on_plateau"]),
    "own LambdaLR": (constant_lambda, None),
    "StepLR subclass": (lambda o: HalvingStepLR(o, 10), None),
    "SequentialLR": (lambda o: torch.optim.lr_scheduler.SequentialLR(
        o, [torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 4),
            torch.optim.lr_scheduler.CosineAnnealingLR(o, 36)], milestones=[4]), None),
}


@pytest.mark.parametrize("name", PASSED_READINGS)
def test_a_passed_scheduler_is_read_from_its_class_without_stepping_it(name: str) -> None:
    make_scheduler, expected = PASSED_READINGS[name]
    optimizer = sgd()
    scheduler = make_scheduler(optimizer)
    state, lrs = scheduler.state_dict(), [group["lr"] for group in optimizer.param_groups]
    reading = huggingface.read_scheduler(scheduler)
    if expected is None or expected[1] is None:
        assert reading == expected
    else:
        assert reading is not None and reading[0] == expected[0]
        assert reading[1] is not None and reading[1].startswith(expected[1])
    assert scheduler.state_dict() == state
    assert [group["lr"] for group in optimizer.param_groups] == lrs


@pytest.mark.parametrize(("make_scheduler", "assumed", "warned"), [
    (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 1e-3, total_steps=40), "one_cycle", False),
    (lambda o: torch.optim.lr_scheduler.StepLR(o, 10), "constant", True),
])
def test_a_readable_passed_scheduler_decides_the_schedule(
    tmp_path: Path, make_scheduler: Callable[[Any], Any], assumed: str, warned: bool,
) -> None:
    trainer = passed_scheduler_trainer(tmp_path, make_scheduler)
    name = type(trainer.lr_scheduler).__name__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_and_check_restored(trainer, **SWEEP)
    facts = result.meta["huggingface"]
    assert facts["passed_scheduler"] == name and facts["for_schedule"] == assumed
    assert facts["schedule_exact"] is not warned
    assert f"the scheduler passed to the Trainer ({name})" in facts["schedule_note"]
    assert "lr_scheduler_type" not in facts["schedule_note"]
    assert schedule_warnings(caught) == ([facts["schedule_note"]] if warned else [])
    assert result.suggestion == result.suggest(for_schedule=assumed).lr


def test_a_scheduler_the_trainer_built_itself_is_not_read_as_passed(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_steps=2, lr_scheduler_type="linear")
    trainer.train()  # leaves its own linear LambdaLR in trainer.lr_scheduler
    assert trainer.lr_scheduler is not None
    trainer.args.lr_scheduler_type = "constant"  # the next train() builds a constant one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = lr_find_trainer(trainer, **SWEEP)
    assert schedule_warnings(caught) == []
    facts = result.meta["huggingface"]
    assert facts["passed_scheduler"] is None and facts["for_schedule"] == "constant"
    assert facts["schedule_note"] == (
        "the suggestion is for the trainer's lr_scheduler_type='constant'")
