"""Training: objectives, the sharded train step, checkpoints and the resumable loop."""

from gramr2_jax.training.checkpoint import CheckpointLayoutError, TrainCheckpointer
from gramr2_jax.training.config import TrainConfig
from gramr2_jax.training.losses import Objective
from gramr2_jax.training.reward_model import RewardHead, RewardModel
from gramr2_jax.training.trainer import NonFiniteError, Trainer, TrainResult, train

__all__ = [
    "CheckpointLayoutError", "TrainCheckpointer", "TrainConfig", "Objective", "RewardHead",
    "RewardModel", "NonFiniteError", "Trainer", "TrainResult", "train",
]
