"""The trainer's components: options -> components (`builders`), the training step and its speed
switches, EMA, losses, clocks, guards, the run folder and training states, logging, prefetching and
the flow/propagation guard. `train.py` is the recipe that runs them."""
