"""WebDataset shards: round trips, corrupt data, node/worker splitting, batch layouts."""

from __future__ import annotations

import json
import tarfile
import warnings
from pathlib import Path

import pytest
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from lagernvs.cli import main as cli_main
from lagernvs.data.preprocess import Re10kEvalDataset
from lagernvs.data.readers import list_scenes, load_scene
from lagernvs.data.shards import (
    ShardRecord,
    parse_sample,
    read_index,
    scene_to_sample,
    write_shards,
)
from lagernvs.data.stream import (
    DataErrors,
    DataWarning,
    EvaluationStream,
    SceneStream,
    StreamLoader,
    TrainingStream,
    resolve_urls,
)
from lagernvs.data.synthetic import write_synthetic_dataset
from lagernvs.data.views import (
    FixedViewSelector,
    IndexEntry,
    TrainViewSampler,
    ViewSamplerConfig,
)

NUM_SCENES, NUM_FRAMES, SIZE = 6, 5, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(
        root, NUM_SCENES, split="train", seed=11, num_frames=NUM_FRAMES, height=SIZE, width=SIZE
    )
    return root


@pytest.fixture(scope="module")
def shard_dir(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    write_shards("re10k", dataset, out, split="train", scenes_per_shard=2, progress=False)
    return out


def _scene_ids(dataset: Path) -> list[str]:
    return list_scenes(dataset, "re10k", split="train")


def _assert_same_scene(streamed: ShardRecord, on_disk) -> None:
    scene = streamed.scene
    assert scene.scene_id == on_disk.scene_id
    assert scene.frame_ids == on_disk.frame_ids
    assert [p.name for p in scene.image_paths] == [p.name for p in on_disk.image_paths]
    assert torch.equal(scene.c2w, on_disk.c2w)
    assert torch.equal(scene.fxfycxcy, on_disk.fxfycxcy)
    assert torch.equal(scene.image_sizes, on_disk.image_sizes)
    assert scene.source_format == on_disk.source_format
    assert streamed.frames == [p.read_bytes() for p in on_disk.image_paths]


def test_round_trip_of_synthetic_scenes_is_exact(dataset, shard_dir):
    index = read_index(shard_dir)
    ids = _scene_ids(dataset)
    assert index["num_scenes"] == NUM_SCENES and sorted(index["scenes"]) == ids
    assert sorted(index["shards"]) == [f"shard-00000{i}.tar" for i in range(3)]
    assert all(s["num_scenes"] == 2 for s in index["shards"].values())
    streamed = {s.scene.scene_id: s for s in SceneStream(shard_dir)}
    assert sorted(streamed) == ids
    for scene_id, item in streamed.items():
        assert Path(item.url).name == index["scenes"][scene_id]["shard"]
        assert index["scenes"][scene_id]["num_frames"] == NUM_FRAMES
        _assert_same_scene(item, load_scene(dataset, "re10k", scene_id=scene_id, split="train"))


def test_cli_writes_the_llff_export_of_a_colmap_folder(shared_data_dir, tmp_path, capsys):
    """`lagernvs shards --source llff` finds the LLFF scene in a folder that also holds the COLMAP
    model it came from (detection alone would pick COLMAP) and stores its cameras exactly."""
    beer = shared_data_dir / "real" / "beer_llff"
    argv = ["shards", "--source", "llff", "--root", str(beer), "--output-dir", str(tmp_path)]
    assert cli_main(argv) == 0
    assert "index.json" in capsys.readouterr().out
    assert read_index(tmp_path)["scenes"]["beer_llff"]["num_frames"] == 71
    (streamed,) = list(SceneStream(tmp_path))
    _assert_same_scene(streamed, load_scene(beer, "llff"))


def test_cli_round_trip_of_the_reference_fixture_and_eval_parity(fixture_dir, tmp_path, capsys):
    """`lagernvs shards` + the reader return every fixture frame unchanged; evaluation batches
    equal the on-disk reference pipeline exactly."""
    pipeline = fixture_dir / "re10k_pipeline"
    root = pipeline / "data"
    argv = ["shards", "--source", "re10k", "--root", str(root), "--split", "test"]
    assert cli_main([*argv, "--output-dir", str(tmp_path), "--scenes-per-shard", "1"]) == 0
    assert "index.json" in capsys.readouterr().out
    streamed = {s.scene.scene_id: s for s in SceneStream(tmp_path)}
    assert sorted(streamed) == list_scenes(root, "re10k", split="test")
    for scene_id, item in streamed.items():
        _assert_same_scene(item, load_scene(root, "re10k", scene_id=scene_id, split="test"))

    views = FixedViewSelector.from_file(pipeline / "view_indices_2v.json")
    batches = list(EvaluationStream(tmp_path, views, batch_size=1))
    reference = Re10kEvalDataset(root, pipeline / "view_indices_2v.json")
    assert len(batches) == len(reference) == 2
    for batch, expected in zip(batches, reference, strict=True):
        assert batch["image_ids"][0] == expected["image_ids"]
        for key in ("images", "rays", "cam_tokens", "c2w", "fxfycxcy", "is_valid"):
            assert torch.equal(batch[key][0].reshape(expected[key].shape), expected[key]), key


def test_writer_skips_unreadable_scenes_and_lists_them(dataset, tmp_path):
    broken = tmp_path / "data"
    write_synthetic_dataset(broken, 2, split="train", seed=3, num_frames=3, height=8, width=8)
    victim = _scene_ids(broken)[0]
    next((broken / "train" / "images" / victim).glob("*.png")).unlink()
    with pytest.warns(UserWarning, match=victim):
        index_path = write_shards("re10k", broken, tmp_path / "out", split="train", progress=False)
    index = json.loads(index_path.read_text())
    assert list(index["skipped"]) == [victim] and index["num_scenes"] == 1
    with pytest.raises(ValueError, match="unknown source"):
        write_shards("blender", broken, tmp_path / "x")


def _write_tar(path: Path, samples: list[dict]) -> None:
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)


@pytest.fixture()
def corrupt_shards(dataset, tmp_path) -> tuple[Path, list[str]]:
    """Two shards: one with a truncated PNG and one bad cameras.json among good samples, and
    one truncated in the middle of its last sample. Returns the folder and the good scenes."""
    ids = _scene_ids(dataset)
    samples = [
        scene_to_sample(load_scene(dataset, "re10k", scene_id=i, split="train")) for i in ids
    ]
    samples[1]["00002.png"] = samples[1]["00002.png"][:40]
    samples[2]["cameras.json"] = b'{"scene_id": "broken", "frame_ids": ['
    _write_tar(tmp_path / "a.tar", samples[:4])
    _write_tar(tmp_path / "b.tar", samples[4:])
    with tarfile.open(tmp_path / "b.tar") as tar:
        last = [m for m in tar.getmembers() if m.name.startswith(samples[5]["__key__"] + ".")]
    cut = last[len(last) // 2].offset_data + 10  # inside a frame of the last sample
    (tmp_path / "b.tar").write_bytes((tmp_path / "b.tar").read_bytes()[:cut])
    return tmp_path, [ids[0], ids[3], ids[4]]


def _all_views_index(ids: list[str]) -> FixedViewSelector:
    return FixedViewSelector([IndexEntry(context=(0, 4), target=(2,), scene=i) for i in ids])


def test_corrupt_samples_and_truncated_shards_are_skipped_and_counted(corrupt_shards, dataset):
    folder, good = corrupt_shards
    errors = DataErrors()
    stream = EvaluationStream(
        [folder / "a.tar", folder / "b.tar"],
        _all_views_index(_scene_ids(dataset)),
        image_size=(16, 16),
        errors=errors,
    )
    with pytest.warns(DataWarning) as caught:
        batches = list(stream)
    assert sorted(sid for b in batches for sid in b["scene_id"]) == sorted(good)
    assert errors.corrupt_samples == 3  # truncated PNG, bad cameras.json, truncated last sample
    assert errors.unreadable_shards == 1
    messages = " ".join(str(w.message) for w in caught)
    assert "b.tar" in messages and "cameras.json" in messages and "cannot decode image" in messages


def test_missing_shard_is_reported_by_name_and_the_rest_is_read(shard_dir, tmp_path):
    missing = tmp_path / "no-such-shard.tar"
    urls = [str(shard_dir / "shard-000000.tar"), str(missing), str(shard_dir / "shard-000001.tar")]
    stream = SceneStream(urls)
    with pytest.warns(DataWarning, match="no-such-shard.tar"):
        scenes = list(stream)
    assert len(scenes) == 4
    assert stream.errors.unreadable_shards == 1 and stream.errors.corrupt_samples == 0


def test_parse_sample_names_what_is_missing():
    with pytest.raises(ValueError, match="no cameras.json"):
        parse_sample({"__key__": "k", "__url__": "u.tar", "00000.png": b""})


@pytest.mark.parametrize("world_size, num_workers", [(2, 2), (3, 1), (1, 4)])
def test_evaluation_stream_visits_each_scene_once_across_ranks_and_workers(
    shard_dir, dataset, world_size, num_workers
):
    seen: dict[int, list[str]] = {}
    for rank in range(world_size):
        seen[rank] = []
        for worker in range(num_workers):
            stream = SceneStream(
                shard_dir,
                rank=rank,
                world_size=world_size,
                worker=worker,
                num_workers=num_workers,
            )
            seen[rank] += [s.scene.scene_id for s in stream]
    everything = [sid for ids in seen.values() for sid in ids]
    assert sorted(everything) == _scene_ids(dataset)  # each scene exactly once
    assert all(seen[rank] for rank in seen)  # every rank gets work (6 scenes, <= 4 workers)


def test_evaluation_batches_split_across_ranks(shard_dir, dataset):
    views = _all_views_index(_scene_ids(dataset))
    per_rank = [
        [
            sid
            for batch in EvaluationStream(
                shard_dir, views, batch_size=2, image_size=(16, 16), rank=rank, world_size=2
            )
            for sid in batch["scene_id"]
        ]
        for rank in range(2)
    ]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == _scene_ids(dataset)


def test_dataloader_workers_split_scenes_and_share_error_counts(corrupt_shards, dataset):
    folder, good = corrupt_shards
    errors = DataErrors()
    stream = EvaluationStream(
        [folder / "a.tar", folder / "b.tar"],
        _all_views_index(_scene_ids(dataset)),
        image_size=(16, 16),
        errors=errors,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        scene_ids = [sid for batch in loader for sid in batch["scene_id"]]
    assert sorted(scene_ids) == sorted(good)
    assert errors.corrupt_samples == 3 and errors.unreadable_shards == 1


def _sampler() -> TrainViewSampler:
    return TrainViewSampler(
        ViewSamplerConfig(
            context_gap=(2, 4),
            num_targets=2,
            cond_view_weights={1: 1.0, 2: 1.0, 3: 1.0},
            long_side=16,
            aspect_ratio_range=(0.5, 2.0),
            zero_cameras_prob=0.5,
        )
    )


def _take(stream, n: int) -> list[dict]:
    iterator = iter(stream)
    return [next(iterator) for _ in range(n)]


def test_training_batches_share_a_layout_and_vary_between_batches(shard_dir):
    batches = _take(TrainingStream(shard_dir, _sampler(), batch_size=3, shuffle_buffer=4), 8)
    layouts = set()
    for batch in batches:
        num_cond = batch["num_cond_views"]
        assert isinstance(num_cond, int)
        b, v, c, h, w = batch["images"].shape
        assert (b, v, c) == (3, num_cond + 2, 3) and max(h, w) == 16
        assert batch["rays"].shape == (b, v, 6, h, w) and batch["cam_tokens"].shape == (b, v, 11)
        layouts.add((num_cond, h, w))
    assert len({layout[0] for layout in layouts}) > 1  # several numbers of conditioning views
    assert len(layouts) > 2


def test_training_stream_is_reproducible_and_differs_by_rank_and_epoch(shard_dir):
    def scene_sequence(rank: int, epoch: int = 0) -> list[str]:
        stream = TrainingStream(
            shard_dir,
            _sampler(),
            batch_size=2,
            shuffle_buffer=3,
            seed=5,
            rank=rank,
            world_size=2,
        )
        stream.set_epoch(epoch)
        return [sid for batch in _take(stream, 4) for sid in batch["scene_id"]]

    first = scene_sequence(0)
    assert first == scene_sequence(0)
    assert first != scene_sequence(1)
    assert first != scene_sequence(0, epoch=1)


def test_training_batches_are_identical_for_identical_positions(shard_dir):
    def batches() -> list[dict]:
        stream = TrainingStream(
            shard_dir, _sampler(), batch_size=2, seed=9, worker=1, num_workers=2
        )
        return _take(stream, 2)

    for a, b in zip(batches(), batches(), strict=True):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["rays"], b["rays"])


def test_stream_loader_is_a_resumable_batch_stream(shard_dir):
    def loader() -> StreamLoader:
        return StreamLoader(TrainingStream(shard_dir, _sampler(), batch_size=2, seed=1))

    first = loader()
    seen = [b["scene_id"] for b in _take(first, 3)]
    assert first.state_dict() == {"epoch": 0, "batches": 3}
    assert [b["scene_id"] for b in _take(loader(), 3)] == seen  # deterministic
    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    assert resumed.stream.epoch == 1  # continues with a fresh, reproducible segment
    assert [b["scene_id"] for b in _take(resumed, 3)] != seen


def test_url_resolution(shard_dir, tmp_path):
    shards = sorted(str(p) for p in shard_dir.glob("*.tar"))
    assert resolve_urls(shard_dir) == shards
    assert resolve_urls(str(shard_dir / "shard-{000000..000002}.tar")) == shards
    remote = ["gs://bucket/a.tar", "pipe:cat x.tar", "https://host/b.tar"]
    assert resolve_urls(remote) == remote
    if "s3" not in wds.gopen_schemes:
        assert resolve_urls("s3://bucket/a.tar") == ["pipe:aws s3 cp s3://bucket/a.tar -"]
    with pytest.raises(FileNotFoundError, match="index"):
        resolve_urls(tmp_path)


def test_pipe_urls_pass_through_to_webdataset(shard_dir):
    ids = [s.scene.scene_id for s in SceneStream(f"pipe:cat {shard_dir / 'shard-000001.tar'}")]
    assert ids == [s.scene.scene_id for s in SceneStream([shard_dir / "shard-000001.tar"])]
    assert len(ids) == 2


def test_invalid_arguments_are_rejected(shard_dir):
    with pytest.raises(ValueError, match="batch_size"):
        TrainingStream(shard_dir, _sampler(), batch_size=0)
    with pytest.raises(ValueError, match="neither resampled"):
        EvaluationStream(shard_dir, FixedViewSelector([]), resampled=True)
    with pytest.raises(ValueError, match="stream position"):
        next(iter(SceneStream(shard_dir, rank=2, world_size=2)))
