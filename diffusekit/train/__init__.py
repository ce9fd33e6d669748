"""Training: the loop, EMA, checkpoints, distributed set-up. `train(TrainConfig(...))` is the whole job."""

from .config import TrainConfig
from .loop import TrainingDiverged, train

__all__ = ["TrainConfig", "TrainingDiverged", "train"]
