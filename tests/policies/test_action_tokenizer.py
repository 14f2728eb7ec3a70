"""OpenVLA's action tokenizer: id range, round trip within half a bin, gripper mask, clipping, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied.policies.openvla.action_tokenizer import ActionTokenizer

VOCAB = 32000
Q01 = [-0.5, -0.2, 0.0, -1.0, -1.0, -0.3, -1.0]
Q99 = [0.5, 0.6, 0.1, 1.0, 1.0, 0.3, 1.0]


def tokenizer():
    return ActionTokenizer.from_stats(VOCAB, {"q01": Q01, "q99": Q99})


def test_ids_are_the_last_256_of_the_vocabulary():
    tok = tokenizer()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-3, 3, size=(1000, 7))  # far outside the bounds too: clipped
    ids = tok.encode(actions)
    assert ids.dtype == np.int64 and ids.shape == (1000, 7)
    assert ids.min() >= VOCAB - 256 and ids.max() <= VOCAB - 1 and tok.first_id == VOCAB - 256
    # OpenVLA's mapping: -1 -> bin 1 -> id vocab-1; exactly +1 -> bin 256 -> id vocab-256 (the raw gripper);
    # q99 normalises to just under 1 (the 1e-8 in the denominator, as OpenVLA) -> bin 255
    extremes = tok.encode(np.array([Q01, Q99]))
    assert (extremes[0] == VOCAB - 1).all()
    assert (extremes[1, :6] == VOCAB - 255).all() and extremes[1, 6] == VOCAB - 256


def test_round_trip_within_half_a_bin_inside_the_bounds():
    tok = tokenizer()
    rng = np.random.default_rng(1)
    actions = rng.uniform(Q01, Q99, size=(5000, 7))
    decoded = tok.decode(tok.encode(actions))
    error = np.abs(decoded - actions)
    assert (error <= tok.bin_width() / 2 + 1e-9).all()
    assert error.max() > 0  # discretised, not identity
    # half a bin of the normalised range: (q99 - q01) / 255 / 2 per normalised dimension
    np.testing.assert_allclose(tok.bin_width()[:6], (np.array(Q99) - np.array(Q01))[:6] / 255)


def test_gripper_dimension_is_not_normalised_but_clipped():
    tok = tokenizer()
    assert tok.mask.tolist() == [True] * 6 + [False]
    normalized = tok.normalize(np.array([[0.5, 0.6, 0.1, 1.0, 1.0, 0.3, 0.25], [0, 0, 0, 0, 0, 0, 7.0]]))
    np.testing.assert_allclose(normalized[0], [1, 1, 1, 1, 1, 1, 0.25], atol=1e-6)
    assert normalized[1, -1] == 1.0  # clipped, not scaled
    custom = ActionTokenizer.from_stats(VOCAB, {"q01": Q01, "q99": Q99}, mask=[True] * 7)
    assert custom.normalize(np.array([Q99]))[0, -1] == pytest.approx(1.0)


def test_torch_tensors_in_and_out_and_persistence():
    tok = tokenizer()
    actions = torch.tensor(np.random.default_rng(2).uniform(Q01, Q99, size=(4, 3, 7)), dtype=torch.float32)
    ids = tok.encode(actions)
    assert ids.dtype == torch.int64 and ids.shape == (4, 3, 7)
    decoded = tok.decode(ids)
    assert decoded.dtype == torch.float32
    restored = ActionTokenizer.from_dict(VOCAB, tok.to_dict())
    assert torch.equal(restored.decode(ids), decoded)
    np.testing.assert_array_equal(tok.encode(actions.numpy()), ids.numpy())  # numpy and torch agree


def test_errors_are_clear():
    tok = tokenizer()
    with pytest.raises(ValueError, match=r"\[31744, 31999\]"):
        tok.decode(np.array([[5] * 7]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 7\)"):
        tok.encode(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="q99 must be >= q01"):
        ActionTokenizer(VOCAB, [1.0], [0.0])
    with pytest.raises(ValueError, match="vocabulary"):
        ActionTokenizer(100, [0.0], [1.0])
