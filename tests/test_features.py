"""Log-mel front end and CMVN on real speech."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soxr
import torch

from asr.audio import load_audio
from asr.features import (LOG_FLOOR, MFCC, FeatureConfig, GlobalCMVN, LogMel, accumulate_stats, deltas, num_frames,
                          pad_waves)

DATA = Path(__file__).parent / "data"
CLIPS = sorted((DATA / "an4").glob("*.flac"))


@pytest.fixture(scope="module")
def frontend() -> LogMel:
    return LogMel()


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    return [load_audio(p) for p in CLIPS]


def logmel(frontend: LogMel, wave: np.ndarray, cutoff: float | None = None) -> torch.Tensor:
    """One utterance alone → (T, 80)."""
    cut = None if cutoff is None else torch.tensor([cutoff])
    feats, frames = frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]), cut)
    assert int(frames[0]) == feats.shape[1]
    return feats[0]


def librosa_logmel(wave: np.ndarray) -> np.ndarray:
    """The reference the module documents: librosa's mel spectrogram, natural log with a floor."""
    mel = librosa.feature.melspectrogram(
        y=wave, sr=16000, n_fft=512, hop_length=160, win_length=400, window="hann", n_mels=80, fmin=20,
        fmax=7600, center=True, pad_mode="constant", power=2.0, htk=False, norm="slaney",
    )  # (80, T)
    return np.log(np.maximum(mel, 1e-6)).T  # (T, 80)


def test_config_defaults():
    c = FeatureConfig()
    assert (c.sample_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels, c.f_min, c.f_max) == (
        16000, 512, 400, 160, 80, 20.0, 7600.0)
    assert LOG_FLOOR == 1e-6


@pytest.mark.parametrize("index", [0, 4])
def test_parity_with_librosa(frontend, waves, index):
    wave = waves[index]
    ours = logmel(frontend, wave).numpy()
    ref = librosa_logmel(wave)
    assert ours.shape == ref.shape == (len(wave) // 160 + 1, 80)
    assert np.abs(ours - ref).max() < 1e-3
    # a real clip spans a useful dynamic range (not all floor, not constant)
    assert ours.max() - ours.min() > 10


def test_parity_with_librosa_on_upsampled_8k(frontend):
    wave = load_audio(DATA / "fsdd_3_jackson_0_8khz.wav")
    assert np.abs(logmel(frontend, wave).numpy() - librosa_logmel(wave)).max() < 1e-3


def test_num_frames():
    assert num_frames(24000) == 151
    assert num_frames(159) == 1 and num_frames(160) == 2
    assert torch.equal(num_frames(torch.tensor([0, 160, 24000])), torch.tensor([1, 2, 151]))


def test_batch_equals_single_utterances(frontend, waves):
    picks = [waves[0], waves[2], load_audio(DATA / "fsdd_3_jackson_0_8khz.wav")]  # 1.5 s, 1.3 s, 0.97 s
    assert len({len(w) for w in picks}) == 3
    batch, lengths = pad_waves(picks)
    assert batch.shape == (3, max(len(w) for w in picks)) and lengths.tolist() == [len(w) for w in picks]
    feats, frames = frontend(batch, lengths)  # (B, T, 80)
    assert frames.tolist() == [len(w) // 160 + 1 for w in picks]
    assert feats.shape == (3, int(frames.max()), 80)
    for i, wave in enumerate(picks):
        alone = logmel(frontend, wave)
        n = int(frames[i])
        torch.testing.assert_close(feats[i, :n], alone, atol=1e-5, rtol=0)
        assert torch.count_nonzero(feats[i, n:]) == 0  # padding frames are zero


def test_pad_waves_content(waves):
    batch, lengths = pad_waves([waves[1], waves[2]])
    np.testing.assert_array_equal(batch[1, : len(waves[2])].numpy(), waves[2])
    assert torch.count_nonzero(batch[1, len(waves[2]) :]) == 0


def test_global_cmvn_normalises(frontend, waves):
    batch, lengths = pad_waves(waves)
    feats, frames = frontend(batch, lengths)
    total, total_sq, count = accumulate_stats(feats, frames)
    assert count == int(frames.sum())
    cmvn = GlobalCMVN(80)
    cmvn.set_stats(total.float(), total_sq.float(), count)
    out = cmvn(feats, frames)
    mask = torch.arange(out.shape[1])[None, :] < frames[:, None]  # (B, T)
    valid = out[mask].double()  # (frames, 80)
    assert valid.mean(0).abs().max() < 1e-3
    torch.testing.assert_close(valid.std(0, unbiased=False), torch.ones(80, dtype=torch.float64), atol=1e-3, rtol=0)
    assert torch.count_nonzero(out[~mask]) == 0
    # statistics agree with numpy over the concatenated utterances
    concat = np.concatenate([feats[i, : frames[i]].numpy() for i in range(len(waves))]).astype(np.float64)
    np.testing.assert_allclose(cmvn.mean.numpy(), concat.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cmvn.inv_std.numpy(), 1 / concat.std(0), rtol=1e-4)
    # the statistics are buffers, so they travel in state_dict (checkpoints)
    assert set(cmvn.state_dict()) == {"mean", "inv_std"}


def test_utterance_mean_removes_a_fixed_channel_colouring(frontend, waves):
    """With utterance_mean, a fixed per-band gain (a different microphone: an offset in log-mel)
    leaves the normalised features unchanged, padding stays 0, and each utterance is centred."""
    batch, lengths = pad_waves(waves)
    feats, frames = frontend(batch, lengths)  # (B, T, 80)
    mask = (torch.arange(feats.shape[1])[None, :] < frames[:, None])[..., None]  # (B, T, 1)
    cmvn = GlobalCMVN(80, utterance_mean=True)
    centred = cmvn.centre(feats, frames)
    cmvn.set_stats(*accumulate_stats(centred, frames)[:2], accumulate_stats(centred, frames)[2])
    colour = torch.linspace(-2.0, 1.5, 80)  # log-gain per mel band, e.g. a bright microphone
    coloured = (feats + colour) * mask
    torch.testing.assert_close(cmvn(coloured, frames), cmvn(feats, frames), atol=1e-4, rtol=0)
    for i in range(len(waves)):
        torch.testing.assert_close(centred[i, : frames[i]].mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    assert torch.count_nonzero(cmvn(feats, frames)[~mask.expand_as(feats)]) == 0
    # without the option the colouring goes straight through
    plain = GlobalCMVN(80)
    plain.set_stats(*accumulate_stats(feats, frames))
    assert (plain(coloured, frames) - plain(feats, frames)).abs().max() > 0.3


def test_a_mean_over_loud_frames_is_not_moved_by_pauses(frontend, waves):
    """With utterance_mean_within_db, appending seconds of near-silence (a pause in a long recording)
    leaves the utterance's centred features unchanged; the plain utterance mean moves. A fixed channel
    colouring is still removed."""
    feats, frames = frontend(*pad_waves(waves[:1]))  # (1, T, 80)
    quiet = np.random.default_rng(0).normal(0.0, 1e-4, 16000 * 4).astype(np.float32)  # 4 s of faint noise
    paused, paused_frames = frontend(*pad_waves([np.concatenate([waves[0], quiet])]))  # (1, T + ~400, 80)
    t = int(frames[0]) - 3  # the last frames' windows reach into the appended pause
    loud, plain = GlobalCMVN(80, True, mean_within_db=30.0), GlobalCMVN(80, True)
    torch.testing.assert_close(loud.centre(paused, paused_frames)[0, :t], loud.centre(feats, frames)[0, :t],
                               atol=1e-4, rtol=0)
    assert (plain.centre(paused, paused_frames)[0, :t] - plain.centre(feats, frames)[0, :t]).abs().max() > 1.0
    assert 0 < int(loud.loud_frames(feats, torch.ones(1, int(frames[0]), dtype=torch.bool)).sum()) < int(frames[0])
    colour = torch.linspace(-2.0, 1.5, 80)
    torch.testing.assert_close(loud.centre(feats + colour, frames), loud.centre(feats, frames), atol=1e-4, rtol=0)


def test_cutoff_masks_high_band_like_8k_audio(frontend, waves):
    wave = waves[0]
    telephone = soxr.resample(soxr.resample(wave, 16000, 8000, quality="HQ"), 8000, 16000, quality="HQ")
    masked = logmel(frontend, wave, cutoff=4000.0)
    full = logmel(frontend, wave)
    narrow = logmel(frontend, telephone)
    edges = librosa.mel_frequencies(n_mels=82, fmin=20, fmax=7600)  # band m spans edges[m]..edges[m + 2]
    low = torch.from_numpy(edges[2:] < 3500)  # bands wholly inside the 8 kHz passband
    high = torch.from_numpy(edges[:-2] >= 4000)  # bands wholly above 4 kHz
    assert low.sum() > 50 and high.sum() > 10
    # below the cutoff nothing changes; above it, the masked 16 kHz clip looks like the 8 kHz one
    torch.testing.assert_close(masked[:, low], full[:, low])
    assert (masked[:, low] - narrow[:, low]).abs().mean() < 0.01
    assert (masked[:, high] - narrow[:, high]).abs().max() < 0.01
    assert torch.all(masked[:, high] == np.log(LOG_FLOOR))
    # ... which the unmasked clip does not (so the comparison can fail)
    assert (full[:, high] - narrow[:, high]).abs().mean() > 1.0


def test_cutoff_is_per_utterance(frontend, waves):
    wave = waves[3]
    batch, lengths = pad_waves([wave, wave])
    feats, _ = frontend(batch, lengths, torch.tensor([0.0, 4000.0]))
    torch.testing.assert_close(feats[0], logmel(frontend, wave), atol=1e-5, rtol=0)
    torch.testing.assert_close(feats[1], logmel(frontend, wave, cutoff=4000.0), atol=1e-5, rtol=0)


def test_mfcc_is_librosas_transform_of_our_log_mel(waves):
    """MFCC = orthonormal DCT-II of the log-mel (librosa.feature.mfcc of the same log-mel), batched like it."""
    batch, lengths = pad_waves(waves[:3])
    cepstra, frames = MFCC(n_ceps=13)(batch, lengths)  # (3, T, 13)
    feats, same_frames = LogMel()(batch, lengths)
    assert torch.equal(frames, same_frames) and cepstra.shape == (3, feats.shape[1], 13)
    for i in range(3):
        n = int(frames[i])
        ref = librosa.feature.mfcc(S=feats[i, :n].numpy().T, n_mfcc=13).T  # (T, 13)
        np.testing.assert_allclose(cepstra[i, :n].numpy(), ref, rtol=1e-4, atol=2e-3)
        assert torch.all(cepstra[i, n:] == 0)
    assert int(frames.min()) < feats.shape[1]  # one clip really was padded
    with pytest.raises(ValueError, match="n_ceps"):
        MFCC(n_ceps=0)


@pytest.mark.parametrize("width, order", [(5, 1), (5, 2), (9, 1), (9, 2)])
def test_deltas_match_librosa_per_utterance_in_a_batch(waves, width, order):
    batch, lengths = pad_waves([waves[0], waves[4][:3000], waves[2][:480]])  # the last: 4 frames, under any width
    feats, frames = LogMel()(batch, lengths)
    derived = deltas(feats, frames, width, order)  # (3, T, 80)
    for i in range(3):
        n = int(frames[i])
        ref = librosa.feature.delta(feats[i, :n].numpy(), width=width, order=order, axis=0, mode="nearest")
        np.testing.assert_allclose(derived[i, :n].numpy(), ref, atol=1e-4)
        assert torch.all(derived[i, n:] == 0)  # the batch's padding neither leaks in nor gets values
    flat = torch.ones(1, 20, 3) * 7.0
    assert deltas(flat, torch.tensor([20]), width, order).abs().max() < 1e-5  # a constant has no slope
    ramp = torch.arange(20.0)[None, :, None].expand(1, 20, 2)
    if order == 1:  # inside the edges, a ramp's slope is 1 per frame
        torch.testing.assert_close(deltas(ramp, torch.tensor([20]), width, 1)[0, width:-width], torch.ones(20 - 2 * width, 2))
    for bad in ({"width": 4}, {"width": 1}, {"width": 5, "order": 5}):
        with pytest.raises(ValueError):
            deltas(flat, torch.tensor([20]), **bad)


@pytest.mark.parametrize("args", [(16000, 512, 80, 20.0, 7600.0), (8000, 256, 40, 0.0, 4000.0),
                                  (22050, 2048, 128, 0.0, 11025.0), (16000, 400, 23, 133.0, 6955.0)])
def test_mel_filters_are_librosas(args):
    """Our Slaney filterbank (no librosa import at start-up) equals librosa.filters.mel."""
    from asr.features import slaney_mel_filters

    rate, n_fft, n_mels, f_min, f_max = args
    ours = slaney_mel_filters(rate, n_fft, n_mels, f_min, f_max)
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)
