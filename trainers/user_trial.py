"""One trial with the user's own training function: ``train(model, config, data, report) -> val_acc``.

lightnas builds the network from the config (``search_spaces.build_model``, or the user's
``model(config, data)`` for spaces that are not CNNs), seeds it, puts it on the trial's device and hands it
over with a ``TrialData`` and a ``report``. The function trains it however it likes, calls
``report(epoch, val_acc)`` after each epoch (the answer says whether to go on) and returns the final
validation accuracy. The trial fails, with one line saying why, when the function raises, never calls
report, or returns something that is not a finite accuracy in [0, 1]; the search goes on.

``run_user_trial(spec)`` is module-level so executors can pickle it; the spec's ``user_train`` and
``user_model`` must then be module-level functions (importable by the workers) too.
"""

from __future__ import annotations

import os
import time

from nas.spec import TrialSpec
from nas.user_fn import UserFunctionError, call_user, check_value, report_for
from trainers.runner import _threads_for, fixed_epochs, save_trial_weights, trial_data


def _name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _build(spec: TrialSpec, config: dict, data):
    import torch.nn as nn

    make = spec.extra.get("user_model")
    if make is None:
        from search_spaces.builder import build_model

        return build_model(config, num_classes=data.num_classes, in_chans=data.input_shape[0])
    who = f"{_name(make)}(config, data)"
    model = call_user(make, who, config, data)
    if not isinstance(model, nn.Module):
        raise UserFunctionError(f"{who} returned a {type(model).__name__}; return a torch.nn.Module")
    return model


def _threads(spec: TrialSpec, config: dict, data) -> int | None:
    if spec.extra.get("user_model") is not None or len(data.input_shape) != 3:
        return spec.threads
    # the study counted the config's MACs (spec.known); a spec without them counts here
    return _threads_for(config, data, spec.threads, macs=spec.known.get("macs"))


def run_user_trial(spec) -> dict:
    import torch

    from trainers.user_data import TrialData

    spec = TrialSpec.of(spec)
    x = spec.extra
    source = x.get("stream_data") or trial_data(spec)
    config = fixed_epochs(spec, spec.config)
    seed = int(spec.seed)
    device = torch.device(x.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    train = x.get("user_train") or builtin_train
    who = f"{_name(train)}(model, config, data, report)"
    threads = _threads(spec, config, source)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    fork = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(seed)  # the network's initial weights and the user's own random draws
            data = TrialData(
                source,
                device=device,
                seed=seed,
                augment=x.get("augment"),
                precision=x.get("precision") or "auto",
                channels_last=x.get("channels_last"),
            )
            model = _build(spec, config, data).to(device)
            report = report_for(spec)
            t0 = time.perf_counter()
            value = call_user(train, who, model, config, data, report)
            train_time = time.perf_counter() - t0
            if report.calls == 0:
                raise UserFunctionError(f"{who} never called report(epoch, val_acc); call it after each epoch")
            value = check_value(value, who)
            metrics = {
                "val_acc": value,
                "train_time": train_time,
                "epochs_run": report.calls,
                "curve": report.curve,
                "pid": os.getpid(),
                "test_acc": _test_acc(data, model),
            }
    finally:
        torch.set_num_threads(old_threads)
    if x.get("save_weights", True):
        save_trial_weights(spec, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}, metrics)
    return {"value": value, "metrics": metrics}


def _test_acc(data, model) -> float | None:
    """Test accuracy for reports; None where the model is not a classifier of these labels."""
    try:
        return data.accuracy(model, "test")
    except Exception:  # a user model with another output layout: no test accuracy, not a failed trial
        return None


def builtin_train(model, config, data, report) -> float:
    """The built-in trainer as a user train function: for a user's own ``model``, or for a streamed Dataset
    (``trainers.stream_train``: the same training, batches through DataLoaders)."""
    on_epoch = lambda e: not report(e["epoch"], e["val_acc"])  # noqa: E731
    options = dict(
        seed=data.seed,
        augment=data.augment,
        on_epoch=on_epoch,
        precision=data.precision,
        channels_last=data.channels_last,
    )
    if not data.in_memory:
        from trainers.stream_train import train_streamed

        return train_streamed(config, data, model=model, **options).val_acc
    from trainers.train import train_trial

    return train_trial(config, data.source, model=model, device=data.device, **options).val_acc
