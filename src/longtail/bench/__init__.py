"""`longtail bench`: grids of (method, seed) runs at one budget, their CSV rows, summaries and progress lines."""
