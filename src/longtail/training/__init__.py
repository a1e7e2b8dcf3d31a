"""Training a run: claiming or resuming its folder, planning data-parallel processes, SPBL or the Trainer, the final evaluation."""
