"""Chaos scenarios: break the shared Redis under steady load and measure what each mode loses.

The pieces, in the order a run uses them:
- `topology`: one Redis and one auth service, with a replica group (gateway + replicas)
  per JWT revocation setting, so every mode runs side by side against the same Redis;
- `load`: a Locust run (bench/locust_runner.py) whose users record every request to a CSV;
- `probes`: data-loss and revocation-window measurements over plain HTTP;
- `scenarios`: the fault script of each scenario (kill, pause, restart, slow), run on any
  deployment (authbench.targets): a fresh chaos cluster, or the compose stack;
- `timeline`: 1-second buckets and per-mode figures from the recorded requests;
- `report`: charts and the chaos section of report.html.
"""
