"""Quickstart for PyTorch: the classic sweep and the search, on synthetic data (seconds on a CPU).

    pip install ".[torch]"           # after installing torch for your platform
    python examples/quickstart_torch.py
"""

import torch
from torch import nn

from lrfind_torch import lr_find, one_cycle_scheduler

torch.manual_seed(0)
inputs = torch.randn(2048, 20)
labels = (inputs[:, :5].sum(dim=1) > 0).long()
train = [(inputs[i : i + 64], labels[i : i + 64]) for i in range(0, 1536, 64)]  # 24 batches
val = [(inputs[i : i + 256], labels[i : i + 256]) for i in range(1536, 2048, 256)]
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

# The classic range test: 100 steps, read off the curve, for a one-cycle schedule.
result = lr_find(model, optimizer, train, nn.functional.cross_entropy)
print("classic sweep:", result)

# The search: short runs under the schedule you will train with, judged on val_data,
# within one training's worth of steps (budget_steps defaults to training_steps).
training_steps = 240
searched = lr_find(model, optimizer, train, nn.functional.cross_entropy, mode="search",
                   val_data=val, training_steps=training_steps)
print("search:", searched.suggestion, "as good between", searched.search.near_best)

# The model and optimizer are exactly as they were: train at the answer.
scheduler = one_cycle_scheduler(optimizer, searched, total_steps=training_steps)
for step in range(training_steps):
    batch_inputs, batch_labels = train[step % len(train)]
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(batch_inputs), batch_labels).backward()
    optimizer.step()
    scheduler.step()
with torch.no_grad():
    val_loss = sum(float(nn.functional.cross_entropy(model(x), y)) for x, y in val) / len(val)
print(f"validation loss after training: {val_loss:.4f}")
