"""Training PFNs on priors: configuration and the training loop."""

from priorfit.train.config import TrainConfig, load_config
from priorfit.train.loop import train

__all__ = ["TrainConfig", "load_config", "train"]
