"""Streaming readers of scene shards: the WebDataset pipelines of training and evaluation.

All pipelines are ``wds.DataPipeline`` objects (iterable datasets) whose stages run inside the
DataLoader workers: shard URLs -> tar members -> samples grouped by key (``group_by_keys``) ->
scenes (:func:`lagernvs.data.shards.parse_sample`) -> [shuffle buffer] -> view selection and
preprocessing -> batches. Put them in a ``DataLoader(stream, batch_size=None, num_workers=N)``
(or :class:`StreamLoader`).

* :class:`SceneStream` (`scenes.py`) yields :class:`~lagernvs.data.shards.ShardRecord` (cameras
  + encoded frames).
* :class:`TrainingStream` and :class:`EvaluationStream` (`batches.py`) turn them into batches of
  preprocessed views.
* :class:`StreamLoader` (`loader.py`): endless, resumable batches through a DataLoader.

Rank and world size come from ``torch.distributed`` when initialised and the worker from
``torch.utils.data.get_worker_info`` (`position.py`); each can be given explicitly (tests
simulate ranks and workers in one process). A corrupt sample (unreadable cameras, missing or
undecodable frames) is skipped with a :class:`DataWarning` and counted in :class:`DataErrors`
(`errors.py`); a shard that cannot be opened or read to its end is reported by URL and counted;
neither stops the stream, until nothing can be read for long (:class:`StreamFailure`, one line;
:func:`check_readable` finds shard lists of which nothing opens before a run starts).
URLs: a shard folder (its ``index.json`` lists the shards), brace patterns
(``shard-{000000..000009}.tar``), lists, and ``pipe:``, ``gs://``, ``http(s)://`` URLs handled
by webdataset's ``gopen``; ``s3://`` becomes webdataset's ``pipe:aws s3 cp URL -`` idiom.
"""

from lagernvs.data.stream.batches import EvaluationStream, TrainingStream, collate_samples
from lagernvs.data.stream.errors import DataErrors, DataWarning, StreamFailure
from lagernvs.data.stream.loader import StreamLoader
from lagernvs.data.stream.position import StreamPosition, stream_position
from lagernvs.data.stream.scenes import SceneStream, check_readable, resolve_urls

__all__ = [
    "DataErrors",
    "DataWarning",
    "EvaluationStream",
    "SceneStream",
    "StreamLoader",
    "StreamFailure",
    "StreamPosition",
    "TrainingStream",
    "check_readable",
    "collate_samples",
    "resolve_urls",
    "stream_position",
]
