"""lr_find_lightning on a tiny LightningModule: the module (metrics included), its
optimizer and the RNGs come back exactly, the suggestion is for the configured
schedule, every form of configure_optimizers works, bad input is refused."""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning as L
import pytest
import torch
import torchmetrics
from torch_helpers import assert_restored, assert_rng_same, assert_same, capture, rng_states

from lrfind_core.result import LRFindResult
from lrfind_core.settings import Settings
from lrfind_torch import TorchOptions
from lrfind_torch.integrations.lightning import (
    lightning_package,
    lr_find_lightning,
    split_configuration,
)

pytestmark = pytest.mark.filterwarnings("ignore:train_data has:UserWarning")

QUIET = TorchOptions(progress=False)
SWEEP = {"start_lr": 1e-4, "end_lr": 10.0, "num_steps": 20, "options": QUIET}


def regression_data(size: int, seed: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, 4, generator=generator)
    return torch.utils.data.TensorDataset(inputs, inputs.sum(dim=1, keepdim=True))


class Regressor(L.LightningModule):
    """An MLP on ``y = sum(x)``; ``configure`` says what configure_optimizers returns:
    ``"plain"``, ``"dict"`` (AdamW with a StepLR), ``"lists"`` (OneCycleLR as
    ``([optimizer], [scheduler])``), ``"two"`` (two optimizers), ``"trainer"`` (reads
    ``self.trainer``)."""

    def __init__(self, configure: str = "plain") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 1))
        self.mean_loss = torchmetrics.MeanMetric()
        self.configure = configure

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, target = batch
        loss = torch.nn.functional.mse_loss(self.net(inputs), target)
        self.mean_loss(loss)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        if self.configure == "dict":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if self.configure == "lists":
            return [optimizer], [torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, 100)]
        if self.configure == "two":
            return [optimizer, torch.optim.SGD(self.parameters(), lr=0.1)]
        if self.configure == "trainer":
            steps = self.trainer.estimated_stepping_batches
            return torch.optim.SGD(self.parameters(), lr=0.1 / steps)
        return optimizer


class RegressionData(L.LightningDataModule):
    """Splits one dataset in ``setup`` (drawing from the torch RNG, as random_split does)
    and doubles the inputs in ``on_before_batch_transfer``."""

    def __init__(self) -> None:
        super().__init__()
        self.transfers = 0

    def setup(self, stage: str) -> None:
        self.train_set, self.val_set = torch.utils.data.random_split(
            regression_data(352, 1), [320, 32])

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.train_set, batch_size=320, shuffle=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.val_set, batch_size=16)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.transfers += 1
        return batch


def loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(regression_data(1024, 2), batch_size=1024)


def run_and_check_restored(module: Regressor, *args: Any, **keywords: Any) -> LRFindResult:
    """lr_find_lightning, then check the module, its metric and RNGs are as before."""
    probe = torch.optim.SGD(module.parameters(), lr=0.1)  # capture() needs an optimizer
    before = capture(module, probe)
    metric = {name: getattr(module.mean_loss, name).clone() for name in ("mean_value", "weight")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = lr_find_lightning(module, *args, **keywords)
    assert_restored(before, module, probe)
    assert_same(metric, {name: getattr(module.mean_loss, name) for name in metric}, "metric")
    assert module.mean_loss._update_count == 1
    assert "log" not in vars(module) and "print" not in vars(module)
    return result


def make_module(configure: str = "plain") -> Regressor:
    module = Regressor(configure)
    module.mean_loss(torch.tensor(3.0))  # a metric with state, to be put back
    return module


def test_datamodule_sweep_restores_everything_and_reads_the_scheduler() -> None:
    module, data = make_module("dict"), RegressionData()
    with pytest.warns(UserWarning, match=r"for_schedule='constant' for the module's StepLR"):
        result = lr_find_lightning(module, data, **SWEEP)
    assert math.isfinite(result.suggestion) and 1e-4 < result.suggestion < 10.0
    facts = result.meta["lightning"]
    assert facts["train_data"] == "datamodule.train_dataloader()"
    assert facts["optimizer"] == "configure_optimizers(): AdamW"
    assert facts["scheduler"] == "StepLR" and facts["for_schedule"] == "constant"
    assert facts["schedule_exact"] is False and result.settings.for_schedule == "constant"
    assert facts["log_calls_ignored"] == data.transfers == len(result.losses) >= 15
    again = run_and_check_restored(make_module("dict"), RegressionData(), **SWEEP)
    assert_same(result.losses, again.losses, "losses of the same call")


def test_no_scheduler_is_a_constant_lr_and_one_cycle_is_exact() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        constant = lr_find_lightning(make_module("plain"), train_dataloaders=loader(), **SWEEP)
        cycle = lr_find_lightning(make_module("lists"), train_dataloaders=loader(), **SWEEP)
    assert not [w for w in caught if "lr_find_lightning:" in str(w.message)]
    assert constant.settings.for_schedule == "constant"
    assert constant.meta["lightning"]["scheduler"] is None
    assert cycle.settings.for_schedule == "one_cycle"
    assert cycle.meta["lightning"]["scheduler"] == "OneCycleLR"
    assert constant.meta["lightning"]["schedule_exact"]
    assert cycle.meta["lightning"]["schedule_exact"]
    asked = lr_find_lightning(make_module("plain"), train_dataloaders=loader(),
                              for_schedule="one_cycle", **SWEEP)
    assert asked.settings.for_schedule == "one_cycle"


def test_search_validates_with_training_step_on_the_val_dataloaders() -> None:
    module = make_module()
    result = run_and_check_restored(
        module, train_dataloaders=loader(),
        val_dataloaders=torch.utils.data.DataLoader(regression_data(64, 3), batch_size=16),
        mode="search", training_steps=40, budget_steps=60, options=QUIET,
    )
    assert math.isfinite(result.suggestion) and result.suggestion > 0
    facts = result.meta["lightning"]
    assert facts["val_data"] == "val_dataloaders"
    assert facts["val_loss"] == "training_step in eval mode, no grad"
    assert result.search is not None


def test_two_optimizers_use_the_first_and_optimizer_keyword_wins() -> None:
    with pytest.warns(UserWarning, match="returned 2 optimizers: lr_find uses the first"):
        result = lr_find_lightning(make_module("two"), train_dataloaders=loader(), **SWEEP)
    assert result.meta["lightning"]["optimizer"] == "configure_optimizers(): AdamW"
    module = make_module("trainer")
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    before = capture(module, optimizer)
    given = lr_find_lightning(module, train_dataloaders=loader(), optimizer=optimizer, **SWEEP)
    assert given.meta["lightning"]["optimizer"] == "optimizer= (SGD)"
    assert given.settings.for_schedule == "one_cycle"
    assert_restored(before, module, optimizer)


def test_every_form_of_configure_optimizers() -> None:
    layer = torch.nn.Linear(2, 2)
    first, second = torch.optim.SGD(layer.parameters(), 0.1), torch.optim.Adam(layer.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(first, 5)
    assert split_configuration(first) == ([first], [])
    assert split_configuration({"optimizer": first, "lr_scheduler": scheduler}) == (
        [first], [scheduler])
    assert split_configuration({"optimizer": first, "lr_scheduler": {"scheduler": scheduler}}) == (
        [first], [scheduler])
    assert split_configuration(([first, second], [scheduler])) == ([first, second], [scheduler])
    assert split_configuration([{"optimizer": first}, {"optimizer": second}]) == (
        [first, second], [])
    assert split_configuration(None) == ([], [])
    with pytest.raises(TypeError, match="not a form Lightning accepts"):
        split_configuration(3)


def test_a_module_from_pytorch_lightning_is_recognised() -> None:
    base = type("LightningModule", (torch.nn.Module,), {"__module__": "pytorch_lightning.core"})
    assert lightning_package(type("Mine", (base,), {})()) == "pytorch_lightning"
    assert lightning_package(make_module()) == "lightning"


class Manual(Regressor):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


class Skipping(Regressor):
    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="expected a Lightning LightningModule"):
        lr_find_lightning(torch.nn.Linear(2, 2), train_dataloaders=loader())
    with pytest.raises(TypeError, match="manual optimization"):
        lr_find_lightning(Manual(), train_dataloaders=loader())
    with pytest.raises(ValueError, match="no training data"):
        lr_find_lightning(make_module())
    with pytest.raises(ValueError, match="not both"):
        lr_find_lightning(make_module(), RegressionData(), train_dataloaders=loader())
    with pytest.raises(TypeError, match="expected a Lightning LightningDataModule"):
        lr_find_lightning(make_module(), datamodule=loader())
    with pytest.raises(RuntimeError, match="pass the optimizer it builds as optimizer="):
        lr_find_lightning(make_module("trainer"), train_dataloaders=loader())
    module = Skipping()
    rng, weights = rng_states(), {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(ValueError, match="training_step returned None"):
        lr_find_lightning(module, train_dataloaders=loader(), **SWEEP)
    assert_rng_same(rng)
    assert_same(weights, dict(module.state_dict()), "state_dict")


SEEN: list[Any] = []


class TwoSources(Regressor):
    """training_step on a dict (or list) of two ``(inputs, target)`` batches, as
    Trainer.fit hands them over for a dict (list) of train loaders; records them in
    ``SEEN`` (lr_find puts the module's own attributes back)."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if torch.is_grad_enabled():
            SEEN.append(batch)
        parts = batch.values() if isinstance(batch, dict) else batch
        return sum(Regressor.training_step(self, part, batch_idx) for part in parts)


@pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\)")  # Lightning's own
def test_several_train_loaders_are_combined_as_trainer_fit_combines_them() -> None:
    from lightning.pytorch.utilities.combined_loader import CombinedLoader

    def loaders() -> dict[str, torch.utils.data.DataLoader]:  # 2 and 4 batches
        shuffled = torch.utils.data.DataLoader(
            regression_data(32, 4), batch_size=16, shuffle=True,
            generator=torch.Generator().manual_seed(5))
        return {"a": shuffled, "b": torch.utils.data.DataLoader(regression_data(64, 6),
                                                                batch_size=16)}

    sweep = {**SWEEP, "num_steps": 6}
    for given in (loaders(), list(loaders().values())):
        module = TwoSources()
        module.mean_loss(torch.tensor(3.0))
        SEEN.clear()
        result = run_and_check_restored(module, train_dataloaders=given, **sweep)
        assert "(2 loaders, combined as by Trainer.fit)" in result.meta["lightning"]["train_data"]
        # the loaders' generators are back, so a pass now is the pass lr_find read
        expected = [batch for batch, _, _ in CombinedLoader(given, mode="max_size_cycle")]
        assert len(expected) == 4 and type(SEEN[0]) is type(given)
        assert_same(expected, SEEN[:4], "the batches training_step got")
        second = "b" if isinstance(given, dict) else 1  # "a" is reshuffled at each cycle
        assert_same([batch[second] for batch in expected[:2]],
                    [batch[second] for batch in SEEN[4:6]], "the second pass")


class Hooked(L.LightningDataModule):
    """Records its hooks (and the module's configure_optimizers) in ``calls``."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def prepare_data(self) -> None:
        self.calls.append("prepare_data")

    def setup(self, stage: str) -> None:
        self.calls.append(f"setup({stage})")

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        self.calls.append("train_dataloader")
        return loader()


def test_bad_arguments_are_refused_before_any_hook_runs(tmp_path: Any) -> None:
    calls: list[str] = []
    module = make_module()
    module.configure_optimizers = lambda: calls.append("configure_optimizers")  # type: ignore[method-assign]
    probe = torch.optim.SGD(module.parameters(), lr=0.1)
    before = capture(module, probe)
    cases = [
        (ValueError, r"start_lr must be a finite number > 0", {"start_lr": -1.0}),
        (ValueError, r"num_steps is the length of a classic sweep",
         {"mode": "search", "training_steps": 100, "num_steps": 20}),
        (ValueError, r"training_steps belongs to mode='search'", {"training_steps": 100}),
        (ValueError, r"unknown suggestion method 'nope'",
         {"settings": Settings(methods=("nope",))}),
        (ValueError, r"needs a file suffix", {"plot_path": str(tmp_path / "curve.nosuch")}),
        (TypeError, r"options must be lrfind_torch.TorchOptions", {"options": "quiet"}),
    ]
    for error, message, keywords in cases:
        with pytest.raises(error, match=message):
            lr_find_lightning(module, Hooked(calls), **keywords)
        assert calls == [], f"hooks ran before {keywords} was refused"
    assert_restored(before, module, probe)


class LogsTheLR(Regressor):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        return super().training_step(batch, batch_idx)


def test_self_optimizers_in_training_step_is_explained_and_everything_restored() -> None:
    module = LogsTheLR()
    module.mean_loss(torch.tensor(3.0))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    module.net(torch.ones(2, 4)).sum().backward()
    optimizer.step()  # momentum state to put back
    before = capture(module, optimizer)
    metric = {name: getattr(module.mean_loss, name).clone() for name in ("mean_value", "weight")}
    with pytest.raises(RuntimeError, match=r"training_step uses the Trainer \(self\.optimizers"
                       r"\(\).*without one.*LearningRateMonitor") as caught:
        lr_find_lightning(module, train_dataloaders=loader(), optimizer=optimizer, **SWEEP)
    assert "not attached to a `Trainer`" in str(caught.value.__cause__)
    assert_restored(before, module, optimizer)
    assert_same(metric, {name: getattr(module.mean_loss, name) for name in metric}, "metric")
    assert "log" not in vars(module) and "print" not in vars(module)
