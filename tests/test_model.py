"""BiLSTM-CTC model: padding invariance, output lengths, normalised posteriors (real features)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.features import LogMel, accumulate_stats, pad_waves
from asr.model import BiLSTMCTC, ModelConfig, phase_averaged_log_probs, phase_offsets, shift_frames, stack_frames

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def real_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-mel features of three real clips of different lengths, padded: (3, T, 80), (3,) frames, CMVN stats."""
    waves = [load_audio(DATA / "an4" / "an1-mblw-b.flac"),  # 151 frames
             load_audio(DATA / "an4" / "an3-mblw-b.flac"),  # 131 frames
             load_audio(DATA / "fsdd_3_jackson_0_8khz.wav")]  # 98 frames
    batch, lengths = pad_waves(waves)
    with torch.no_grad():
        feats, frames = LogMel()(batch, lengths)
    return feats, frames, accumulate_stats(feats, frames)


def make_model(stats, **overrides) -> BiLSTMCTC:
    torch.manual_seed(0)
    config = ModelConfig(**{"hidden_size": 16, "num_layers": 2, "dropout": 0.3, **overrides})
    model = BiLSTMCTC(config)
    total, total_sq, count = stats
    model.cmvn.set_stats(total.float(), total_sq.float(), count)
    return model.eval()


def run(model: BiLSTMCTC, feats: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model(model.cmvn(feats, frames), frames)


VARIANTS = [
    pytest.param({"cell": "lstm", "subsampling": 3}, id="lstm-k3"),
    pytest.param({"cell": "gru", "subsampling": 3}, id="gru-k3"),
    pytest.param({"cell": "lstm", "subsampling": 2, "projection_size": 8}, id="lstm-proj-k2"),
    pytest.param({"cell": "gru", "subsampling": 1}, id="gru-k1"),
    pytest.param({"cell": "lstm", "subsampling": 4, "num_layers": 1}, id="lstm-k4-1layer"),
    pytest.param({"cell": "lstm", "subsampling": 3, "utterance_mean": True}, id="lstm-k3-utterance-mean"),
    pytest.param({"cell": "lstm", "subsampling": 3, "utterance_mean": True, "utterance_mean_within_db": 30.0},
                 id="lstm-k3-utterance-mean-loud-frames"),
]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_padding_does_not_change_outputs(real_batch, overrides):
    feats, frames, stats = real_batch
    model = make_model(stats, **overrides)
    batched, out_lengths = run(model, feats, frames)  # (3, T', V)
    for i in range(feats.shape[0]):
        n = int(frames[i])
        alone, alone_len = run(model, feats[i : i + 1, :n], frames[i : i + 1])
        assert int(alone_len[0]) == int(out_lengths[i]) == alone.shape[1]
        torch.testing.assert_close(batched[i, : alone.shape[1]], alone[0], atol=1e-5, rtol=0)
    # the shorter utterances really were padded inside the batch
    assert int(frames.min()) < feats.shape[1]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_output_lengths_and_normalised_posteriors(real_batch, overrides):
    feats, frames, stats = real_batch
    model = make_model(stats, **overrides)
    k = model.config.subsampling
    log_probs, out_lengths = run(model, feats, frames)
    expected = [math.ceil(int(n) / k) for n in frames]
    assert out_lengths.tolist() == expected
    assert model.output_lengths(frames).tolist() == expected
    assert log_probs.shape == (3, math.ceil(feats.shape[1] / k), 29)
    assert log_probs.dtype == torch.float32
    for i, n in enumerate(expected):
        probs = log_probs[i, :n].exp().sum(-1)
        torch.testing.assert_close(probs, torch.ones(n), atol=1e-5, rtol=0)
        assert torch.all(log_probs[i, :n] <= 0)
    expected_dim = 2 * (overrides.get("projection_size") or 16)
    assert model.output_dim == expected_dim


def test_stack_frames_content():
    feats = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
    lengths = torch.tensor([7, 5])
    feats[1, 5:] = 0  # frames past the length are zero, as the front end guarantees
    stacked, out = stack_frames(feats, lengths, 3)  # (2, 3, 9)
    assert stacked.shape == (2, 3, 9) and out.tolist() == [3, 2]
    assert torch.equal(stacked[0, 0], feats[0, 0:3].reshape(-1))
    assert torch.equal(stacked[0, 2], torch.cat([feats[0, 6], torch.zeros(6)]))
    assert torch.equal(stacked[1, 1], torch.cat([feats[1, 3], feats[1, 4], torch.zeros(3)]))
    same, same_len = stack_frames(feats, lengths, 1)
    assert same is feats and same_len is lengths


def test_dropout_only_in_training(real_batch):
    feats, frames, stats = real_batch
    model = make_model(stats, cell="lstm", subsampling=3)
    a, _ = run(model, feats, frames)
    b, _ = run(model, feats, frames)
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        c, _ = model(model.cmvn(feats, frames), frames)
    assert not torch.allclose(a, c)


def test_gradients_reach_every_parameter(real_batch):
    feats, frames, stats = real_batch
    model = make_model(stats, cell="lstm", subsampling=3, projection_size=8).train()
    log_probs, out_lengths = model(model.cmvn(feats, frames), frames)
    targets = torch.tensor([3, 4, 5, 3, 4, 5], dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, torch.tensor([2, 2, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.count_nonzero(param.grad) > 0, name


def test_config_dict_round_trip():
    config = ModelConfig(hidden_size=7, num_layers=1, cell="gru", projection_size=0, subsampling=2)
    raw = config.to_dict() | {"unknown_future_field": 1}
    assert ModelConfig.from_dict(raw) == config
    model = BiLSTMCTC(config)
    assert isinstance(model.rnn, torch.nn.GRU) and model.num_parameters() == sum(
        p.numel() for p in model.parameters())
    assert np.isclose(model.num_parameters(), sum(p.numel() for p in model.state_dict().values()) - 2 * 80)


# --- intermediate CTC: the stack run in two halves that share its parameters ----------------------------

SPLIT_VARIANTS = [
    pytest.param({"cell": "lstm", "num_layers": 3}, id="lstm-3"),
    pytest.param({"cell": "lstm", "num_layers": 3, "projection_size": 8}, id="lstm-proj-3"),
    pytest.param({"cell": "gru", "num_layers": 4}, id="gru-4"),
]


@pytest.mark.parametrize("overrides", SPLIT_VARIANTS)
def test_intermediate_forward_keeps_the_top_output(real_batch, overrides):
    feats, frames, stats = real_batch
    model = make_model(stats, **overrides)
    plain, plain_lengths = run(model, feats, frames)
    for layer in range(1, model.config.num_layers):
        with torch.no_grad():
            top, lengths, middle = model(model.cmvn(feats, frames), frames, intermediate_layer=layer)
        torch.testing.assert_close(top, plain, atol=1e-6, rtol=0)  # the split computes the same stack
        assert torch.equal(lengths, plain_lengths) and middle.shape == plain.shape
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(middle[i, :n].exp().sum(-1), torch.ones(n), atol=1e-5, rtol=0)
        assert not torch.allclose(middle, top, atol=1e-3)  # a different layer's reading
    assert list(model.state_dict()) == list(make_model(stats, **overrides).state_dict())  # no new weights


def test_intermediate_loss_trains_only_the_layers_below_it(real_batch):
    feats, frames, stats = real_batch
    model = make_model(stats, num_layers=3).train()
    _, lengths, middle = model(model.cmvn(feats, frames), frames, intermediate_layer=2)
    targets = torch.tensor([3, 4, 5, 3, 4, 5], dtype=torch.long)
    torch.nn.functional.ctc_loss(middle.transpose(0, 1), targets, lengths, torch.tensor([2, 2, 2])).backward()
    for name, param in model.named_parameters():
        below = name.startswith("output") or any(f"_l{i}" in name for i in (0, 1))  # shared output layer too
        reached = param.grad is not None and torch.count_nonzero(param.grad) > 0
        assert reached == below, name
    # dropout between the halves is on in training, as inside the unsplit stack
    with torch.no_grad():
        a = model(model.cmvn(feats, frames), frames, intermediate_layer=2)[0]
        b = model(model.cmvn(feats, frames), frames, intermediate_layer=2)[0]
    assert not torch.allclose(a, b)


def test_split_needs_a_layer_inside_the_stack(real_batch):
    _, _, stats = real_batch
    model = make_model(stats, num_layers=2)
    for layer in (-1, 2, 3):
        with pytest.raises(ValueError, match="cannot split a 2-layer RNN"):
            model(torch.zeros(1, 6, 80), torch.tensor([6]), intermediate_layer=layer)


@pytest.mark.parametrize("overrides", VARIANTS[:5])
def test_phase_average_keeps_lengths_padding_and_normalisation(real_batch, overrides):
    feats, frames, stats = real_batch
    model = make_model(stats, **overrides)
    normalised = model.cmvn(feats, frames)
    with torch.no_grad():
        plain, plain_lengths = model(normalised, frames)
    averaged, lengths = phase_averaged_log_probs(model, normalised, frames)  # (3, T', V)
    assert averaged.shape == plain.shape and torch.equal(lengths, plain_lengths)
    for i in range(feats.shape[0]):
        n, steps = int(frames[i]), int(lengths[i])
        torch.testing.assert_close(averaged[i, :steps].exp().sum(-1), torch.ones(steps), atol=1e-5, rtol=0)
        alone, _ = phase_averaged_log_probs(model, normalised[i:i + 1, :n], frames[i:i + 1])
        torch.testing.assert_close(averaged[i, :steps], alone[0], atol=1e-5, rtol=0)
    if model.config.subsampling == 1:  # one phase: nothing to average
        torch.testing.assert_close(averaged, plain, atol=1e-6, rtol=0)
    else:
        assert not torch.allclose(averaged[0, :5], plain[0, :5], atol=1e-4)


def test_phase_average_is_the_mean_probability_of_the_shifted_runs(real_batch):
    feats, frames, stats = real_batch
    model = make_model(stats, subsampling=3)
    one = model.cmvn(feats, frames)[:1, : int(frames[0])]  # (1, 151, 80): 51 steps as is
    lengths = frames[:1]
    assert phase_offsets(3) == [-1, 0, 1] and phase_offsets(2) == [-1, 0] and phase_offsets(1) == [0]
    with torch.no_grad():
        runs = [model(*shift_frames(one, lengths, offset))[0][0] for offset in (-1, 0, 1)]  # 51, 51, 50 steps
    assert [r.shape[0] for r in runs] == [51, 51, 50]
    averaged, _ = phase_averaged_log_probs(model, one, lengths)
    expected = torch.stack([r[:50].exp() for r in runs]).mean(0).log()  # (50, V): all three phases
    torch.testing.assert_close(averaged[0, :50], expected, atol=1e-5, rtol=0)
    last = torch.stack([runs[0][50].exp(), runs[1][50].exp()]).mean(0).log()  # the later phase has no step 50
    torch.testing.assert_close(averaged[0, 50], last, atol=1e-5, rtol=0)


def test_shift_frames_moves_the_phase_and_keeps_padding_zero():
    feats = torch.arange(1, 2 * 5 * 2 + 1, dtype=torch.float32).reshape(2, 5, 2)
    lengths = torch.tensor([5, 3])
    feats[1, 3:] = 0
    earlier, earlier_lengths = shift_frames(feats, lengths, -1)  # the first frame repeated in front
    assert earlier_lengths.tolist() == [6, 4] and torch.equal(earlier[:, 0], feats[:, 0])
    assert torch.equal(earlier[:, 1:], feats) and torch.all(earlier[1, 4:] == 0)
    later, later_lengths = shift_frames(feats, lengths, 1)
    assert later_lengths.tolist() == [4, 2] and torch.equal(later, feats[:, 1:]) and torch.all(later[1, 2:] == 0)
    _, clamped = shift_frames(feats, torch.tensor([1, 1]), 1)
    assert clamped.tolist() == [1, 1]
