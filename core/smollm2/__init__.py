"""SmolLM2 building blocks shared by the ``saturation``, ``hard-tokens`` and ``cascade`` experiments.

- :mod:`core.smollm2.model`: resolving ``--model`` (hub id, local directory, ``.gguf``), loading the
  frozen base model, building add-on LLMs, a tiny random stand-in for tests.
- :mod:`core.smollm2.alpaca`: Alpaca records (hub or JSON file) and the token pipelines C and D (spec 3.3/3.4).
- :mod:`core.smollm2.ops`: cos_sim rules, quantile thresholds, hidden-state extraction, per-layer
  statistics, early-exit accounting.
- :mod:`core.smollm2.train`: the stage training loops (masked-context and per-token variants).

Everything here imports torch/transformers at module level: import it inside ``run()`` only.
"""
