"""The activations a config may name (its ``activation`` keys). Torch only: ``nas export`` writes the entries a
network uses into model.py under the same name."""

from torch import nn

ACT_LAYERS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,  # MobileNetV2
    "hardswish": nn.Hardswish,  # MobileNetV3
    "silu": nn.SiLU,  # EfficientNet ("swish")
}
