"""Training and evaluation loops shared by the experiments (see ``docs/building-blocks.md``).

:mod:`~core.training.loop` (``fit``, ``train_epoch``, ``evaluate_loss``, ``EarlyStopping``), and the
drivers built on it: :mod:`~core.training.charlm` (Exp 1–4), :mod:`~core.training.growing` (Exp 6–7),
:mod:`~core.training.routing` (routed evaluation, Exp 10–11). They import :mod:`core.runtime`, never
the experiment catalog above them.
"""
