"""`authbench soak`: long steady load of every mode, watching for what grows.

- `sampling.py`: what one sample reads (each process's RSS and open descriptors, Redis
  `used_memory`, the key count per prefix, keys without a TTL);
- `criteria.py`: the pass criteria (slopes after the warm-up, keys bounded by the live
  credentials the load can hold);
- `charts.py`: one PNG per series over time;
- `run.py`: the cluster (every mode side by side, as chaos runs them), the Locust load,
  the sampling loop and the results folder.
"""
