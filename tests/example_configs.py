"""Configs several test modules share: one network with every built-in block type."""

# Conv, BottleNeck and InvertedResidual (with squeeze-excite), training keys beside the architecture.
EVERY_BLOCK = {
    "stem": {"channels": 16, "kernel": 3, "stride": 1, "activation": "relu"},
    "stages": [
        {"block": "Conv", "channels": 32, "stride": 2, "repeats": 1, "kernel": 3, "activation": "relu"},
        {
            "block": "BottleNeck",
            "channels": 64,
            "stride": 2,
            "repeats": 2,
            "kernel": 3,
            "expansion": 4,
            "activation": "relu",
        },
        {
            "block": "InvertedResidual",
            "channels": 64,
            "stride": 1,
            "repeats": 2,
            "kernel": 5,
            "expansion": 6,
            "se_ratio": 0.25,
            "activation": "hardswish",
        },
    ],
    "head": {"channels": 128, "activation": "relu"},
    "classifier": {"dropout": 0.1},
    # training keys sit beside the architecture and are ignored here
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "lr": 0.05,
    "weight_decay": 0.0005,
    "batch_size": 64,
    "epochs": 10,
    "label_smoothing": 0.1,
    "warmup_epochs": 1,
}
