"""Data sets as in-memory tensors and the training loop for one trial."""

from trainers.data import TensorData, load_dataset
from trainers.presets import PRESETS, Preset, get_preset
from trainers.train import TrialFailed, TrialResult, train_trial

__all__ = ["load_dataset", "TensorData", "train_trial", "TrialResult", "TrialFailed", "get_preset", "PRESETS", "Preset"]
