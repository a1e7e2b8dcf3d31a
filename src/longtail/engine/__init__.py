"""The training loop and what it calls per step: the Trainer, steps, optimisers and schedules, early stopping, signals, data-parallel training."""
