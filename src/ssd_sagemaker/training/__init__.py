"""The training engine: wiring, loop, schedule, early stopping."""
