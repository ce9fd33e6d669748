"""Training: set-up (setup.py), one step (step.py), the hooks around it (hooks.py: logs, checkpoints, grids, quality
checks) and the loop that calls them (loop.py); EMA, checkpoints, distributed set-up. `train(TrainConfig(...))` is
the whole job."""

from .config import TrainConfig
from .faults import BadData, CheckpointNotWritten, TrainingStopped
from .loop import TrainingDiverged, train
from .ownership import RunLocked

__all__ = ["TrainConfig", "TrainingStopped", "TrainingDiverged", "BadData", "CheckpointNotWritten", "RunLocked",
           "train"]
