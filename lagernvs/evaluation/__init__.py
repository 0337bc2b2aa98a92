"""Evaluation: protocols, their datasets and runner, and the benchmarks built on them.

``protocol`` (the YAML schema) -> ``dataset`` / ``synthetic`` (the samples it names) and
``model`` (the model, through :func:`lagernvs.pipeline.load_pipeline`) -> ``runner`` (one run in
one output folder) with ``records`` (what it writes) and ``metrics`` -> ``evaluate``
(``lagernvs eval``) and ``extrapolation`` / ``speed`` (``lagernvs bench``, in ``bench``).
"""
