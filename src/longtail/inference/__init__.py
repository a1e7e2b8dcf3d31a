"""Using a trained run: evaluation on its splits, prediction on new images, export."""
