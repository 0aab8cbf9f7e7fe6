"""A user's own data and train function for the nas.api Ray test, at module level in a module of their own,
as a user's script would have them: nas.api's pickling check passes, and the test has Ray ship the module by
value (Ray's workers do not have tests/nas on their path)."""

import torch
from torch import nn


def digits(n: int = 300):
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images[:n, None] / 16, dtype=torch.float32), torch.tensor(d.target[:n])


def train_one_epoch(model, config, data, report):
    """One Adam epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for xb, yb in data.loader("train", batch_size=32):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb.to(data.device)), yb.to(data.device)).backward()
        opt.step()
    acc = data.accuracy(model, "val")
    report(1, acc)
    return acc
