"""The capacity model: service demands from measured cells, exact MVA and bottleneck
bounds, validation against this machine, projection to many replicas and one Redis core.

`capacity.build(run_dirs)` does the work, `chart.draw` the figure, `report.section_html`
the report section; `authbench model` runs them on run folders.
"""
