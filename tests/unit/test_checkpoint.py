"""Checkpoints count only when complete; corrupt or truncated ones are never loaded."""

from __future__ import annotations

import torch

from avfleet.train import checkpoint


def save_steps(run, steps):
    for step in steps:
        checkpoint.save(
            str(run),
            step,
            0,
            {"w": torch.full((3,), float(step))},
            {"state": {}, "param_groups": []},
        )


def test_newest_complete_checkpoint_wins(tmp_path):
    save_steps(tmp_path, [5, 10])
    ckpt = checkpoint.latest_complete(str(tmp_path))
    assert ckpt.step == 10 and torch.equal(ckpt.model["w"], torch.full((3,), 10.0))


def test_truncated_checkpoint_is_skipped(tmp_path):
    save_steps(tmp_path, [5, 10])
    weights = tmp_path / "checkpoints/step-00000010/model.pt"
    weights.write_bytes(weights.read_bytes()[:-20])
    assert checkpoint.latest_complete(str(tmp_path)).step == 5


def test_bit_flipped_checkpoint_is_skipped(tmp_path):
    save_steps(tmp_path, [5, 10])
    weights = tmp_path / "checkpoints/step-00000010/model.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert checkpoint.latest_complete(str(tmp_path)).step == 5


def test_checkpoint_without_meta_does_not_exist(tmp_path):
    save_steps(tmp_path, [5, 10])
    (tmp_path / "checkpoints/step-00000010/meta.json").unlink()  # died before its commit
    assert checkpoint.latest_complete(str(tmp_path)).step == 5
    (tmp_path / "checkpoints/step-00000005/meta.json").unlink()
    assert checkpoint.latest_complete(str(tmp_path)) is None
