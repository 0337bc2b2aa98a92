"""Training: the shared loop and the two entry points that use it.

`train.py` (deterministic model) and `train_denoiser.py` (diffusion decoder) are the entry
points; `entry.py` holds what they share. The loop is `trainer.py`, helped by `update.py`
(optimizer step, skips decided on the device), `validation.py`, `checkpoints.py`, `tracking.py`,
`signals.py` and `accelerator.py`; `outputs.py` states the loss contract. The batch streams are
the data layer's (:mod:`lagernvs.data.batch_streams`, :mod:`lagernvs.data.training_stream`).
"""
