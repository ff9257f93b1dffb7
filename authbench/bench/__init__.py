"""`authbench bench`: the experiment matrix, its protocol, the samplers and the report.

Modules, in the order a run uses them:
- `matrix.py`: which cells (mode x replicas x load x JWT algorithm) and in what order;
- `protocol.py`: how one cell is measured (health check, warm-up, capture window, rest);
- `locust_runner.py`: Locust as a headless subprocess (also used by `authbench chaos`);
- `samplers.py`: Redis INFO, process CPU, the replicas' /metrics;
- `statistics.py`: percentiles from histograms, merging, spread across repeats;
- `runner.py`: the run itself (clusters, cells, progress, manifest, summary.csv);
- `report.py`: charts and report.html from the files of a results directory.
"""
