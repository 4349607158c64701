"""Training on real speech: exact resume, overfitting five utterances, checkpoint files."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.augment import AugmentConfig
from asr.checkpoint import (
    FORMAT,
    CheckpointError,
    atomic_torch_save,
    export_for_inference,
    load_model,
    read_checkpoint,
)
from asr.data import SpeechDataset
from asr.decoding.greedy import greedy_decode
from asr.features import LogMel
from asr.manifest import read_manifest
from asr.text import CharTokenizer
from asr.train import TrainConfig, Trainer, train
from asr.transcribe import Transcriber
from conftest import train_overfit

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "an4_mblw.tsv"


def tiny_config(out_dir: Path) -> TrainConfig:
    """A 2-epoch run with augmentation and dropout on, three batches per epoch."""
    return TrainConfig.from_dict({
        "out_dir": str(out_dir),
        "seed": 3,
        "data": {"train": [str(MANIFEST)], "dev": {"an4": str(MANIFEST)}, "max_batch_seconds": 3.0},
        "model": {"hidden_size": 32, "num_layers": 2, "subsampling": 3, "dropout": 0.2},
        "augment": {"enabled": True, "bandlimit_prob": 0.5},
        "optim": {"epochs": 2, "lr": 3e-3, "warmup_steps": 2, "average_last": 2},
    })


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)


def optimizer_tensors(path: Path) -> dict[str, torch.Tensor]:
    state = read_checkpoint(path)["training_state"]["optimizer"]["state"]
    return {f"{p}.{k}": v for p, s in state.items() for k, v in s.items() if torch.is_tensor(v)}


# --- resume -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory) -> tuple[Path, Path]:
    """The same tiny config trained straight through, and in two runs (1 epoch, then --resume)."""
    root = tmp_path_factory.mktemp("resume")
    straight, resumed = root / "straight", root / "resumed"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: extra threads only add waiting on a busy machine
    try:
        final = train(tiny_config(straight), device="cpu")
        assert final == straight / "avg.pt"
        first = train(tiny_config(resumed), stop_after_epochs=1, device="cpu")
        assert first == resumed / "last.pt"
        assert not (resumed / "avg.pt").exists() and not (resumed / "epoch2.pt").exists()
        again = train(tiny_config(resumed), resume=True, device="cpu")
        assert again == resumed / "avg.pt"
    finally:
        torch.set_num_threads(threads)
    return straight, resumed


def test_resume_is_exact(resume_runs):
    straight, resumed = resume_runs
    assert_same_tensors(weights(straight / "last.pt"), weights(resumed / "last.pt"))
    assert_same_tensors(weights(straight / "avg.pt"), weights(resumed / "avg.pt"))
    assert_same_tensors(optimizer_tensors(straight / "last.pt"), optimizer_tensors(resumed / "last.pt"))
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(resumed / "last.pt")
    assert a["training_state"]["scheduler"]["last_epoch"] == b["training_state"]["scheduler"]["last_epoch"] == 6
    assert a["info"]["step"] == b["info"]["step"] == 6  # 3 batches × 2 epochs
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in resume_runs]
    assert [r["kind"] for r in rows[0]] == [r["kind"] for r in rows[1]] == ["epoch", "epoch", "average"]
    for x, y in zip(rows[0][:2], rows[1][:2]):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-6)
        assert x["dev"]["an4"]["loss"] == pytest.approx(y["dev"]["an4"]["loss"], abs=1e-5)


def test_resume_test_is_not_vacuous(resume_runs):
    straight, _ = resume_runs
    # the second epoch changed the weights, and a different seed gives a different model
    after_one, after_two = weights(straight / "epoch1.pt"), weights(straight / "epoch2.pt")
    assert any(not torch.equal(after_one[k], after_two[k]) for k in after_one if after_one[k].is_floating_point())
    assert torch.count_nonzero(after_two["cmvn.mean"]) > 0  # CMVN was estimated from the training audio


def test_run_writes_its_files(resume_runs):
    straight, _ = resume_runs
    for name in ["epoch1.pt", "epoch2.pt", "last.pt", "best.pt", "avg.pt", "metrics.jsonl"]:
        assert (straight / name).is_file(), name
    pytest.importorskip("matplotlib")
    assert (straight / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(straight.glob(".*.tmp")) and not list(straight.glob("*.tmp*"))  # no leftovers
    assert "training_state" in read_checkpoint(straight / "last.pt")
    assert "training_state" not in read_checkpoint(straight / "best.pt")
    assert "training_state" not in read_checkpoint(straight / "avg.pt")
    info = read_checkpoint(straight / "avg.pt")["info"]
    assert info["averaged_from"] == ["epoch1.pt", "epoch2.pt"]
    average = {k: (weights(straight / "epoch1.pt")[k].double() + weights(straight / "epoch2.pt")[k].double()) / 2
               for k in weights(straight / "avg.pt")}
    assert_same_tensors({k: v.float() for k, v in average.items()}, weights(straight / "avg.pt"))


def test_three_batches_per_epoch(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "x"), device="cpu")
    assert len(trainer.sampler) == 3
    assert sorted(i for batch in trainer.sampler for i in batch) == list(range(5))


def test_augmentation_is_seeded_by_epoch_and_index():
    utts = read_manifest(MANIFEST)
    config = AugmentConfig(speed_factors=[0.9, 1.1], bandlimit_prob=0.5)
    a = SpeechDataset(utts, CharTokenizer(), config, seed=1)
    b = SpeechDataset(utts, CharTokenizer(), config, seed=1)
    plain = a.plain_example(0)
    np.testing.assert_array_equal(plain.wave, load_audio(utts[0].audio_path))
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(len(utts)):
            x, y = a[i], b[i]
            np.testing.assert_array_equal(x.wave, y.wave)
            assert x.cutoff_hz == y.cutoff_hz and x.targets == y.targets
            assert len(x.wave) != len(a.plain_example(i).wave)  # speed 0.9 / 1.1 always changes the length
    a.set_epoch(0)
    first = [a[i].wave for i in range(len(utts))]
    a.set_epoch(1)
    second = [a[i].wave for i in range(len(utts))]
    assert any(len(x) != len(y) or not np.array_equal(x, y) for x, y in zip(first, second))


def test_random_gain_stays_in_its_range_and_only_attenuates_below_zero():
    """gain_db bounds the gain from above, min_gain_db (default −gain_db) from below, in dB."""
    from asr.augment import random_gain

    wave = load_audio(read_manifest(MANIFEST)[0].audio_path) * 0.5  # real speech, peak well below 1
    rng = np.random.default_rng(0)
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    gains = [20 * np.log10(rms(random_gain(wave, rng, 6.0, -20.0)) / rms(wave)) for _ in range(300)]
    assert -20.0 <= min(gains) < -17.0 and 3.0 < max(gains) <= 6.0 + 1e-6
    symmetric = [20 * np.log10(rms(random_gain(wave, rng, 6.0)) / rms(wave)) for _ in range(300)]
    assert -6.0 <= min(symmetric) < -5.0 and 5.0 < max(symmetric) <= 6.0 + 1e-6
    quieter = [20 * np.log10(rms(random_gain(wave, rng, 0.0, -12.0)) / rms(wave)) for _ in range(50)]
    assert all(-12.0 <= g <= 1e-6 for g in quieter) and min(quieter) < -6.0
    np.testing.assert_array_equal(random_gain(wave, rng, 0.0), wave)  # no gain range: unchanged


def test_pad_with_noise_keeps_the_utterance_and_adds_quiet_noise_around_it():
    """The utterance is unchanged between the pads; each pad is ≤ max_seconds of noise 35–55 dB below it."""
    from asr.augment import pad_with_noise

    wave = load_audio(read_manifest(MANIFEST)[0].audio_path)
    rng = np.random.default_rng(0)
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    lengths = []
    for _ in range(20):
        padded = pad_with_noise(wave, rng, 0.5, (-55.0, -35.0))
        extra = len(padded) - len(wave)
        assert padded.dtype == np.float32 and 0 <= extra <= 2 * 8000
        starts = [i for i in range(extra + 1) if np.array_equal(padded[i:i + 100], wave[:100])]
        assert len(starts) == 1, "the speech appears once, unchanged"
        before = starts[0]
        np.testing.assert_array_equal(padded[before:before + len(wave)], wave)
        noise = np.concatenate([padded[:before], padded[before + len(wave):]])
        if len(noise) > 1600:
            assert -57.0 < 20 * np.log10(rms(noise) / rms(wave)) < -33.0
        lengths.append(extra)
    assert max(lengths) > 8000 and min(lengths) < 8000  # the pad lengths vary


def test_dataset_pads_only_when_asked_and_keeps_the_other_draws():
    """pad_prob = 1 lengthens every utterance; the speed/gain/band draws stay those of an unpadded run."""
    utts = read_manifest(MANIFEST)
    plain = SpeechDataset(utts, CharTokenizer(), AugmentConfig(speed_factors=[1.0], bandlimit_prob=0.5), seed=3)
    padded = SpeechDataset(utts, CharTokenizer(), AugmentConfig(speed_factors=[1.0], bandlimit_prob=0.5,
                                                                pad_prob=1.0, pad_max_s=0.3), seed=3)
    for i in range(len(utts)):
        a, b = plain[i], padded[i]
        assert a.cutoff_hz == b.cutoff_hz and a.targets == b.targets
        assert len(a.wave) < len(b.wave) <= len(a.wave) + 2 * int(0.3 * 16000)
        assert any(np.array_equal(b.wave[j:j + len(a.wave)], a.wave) for j in range(len(b.wave) - len(a.wave) + 1))


# --- overfit ----------------------------------------------------------------------------------------


def test_overfit_five_utterances(overfit_model):
    rows = [json.loads(line) for line in (overfit_model.parent / "metrics.jsonl").read_text().splitlines()]
    average = [r for r in rows if r["kind"] == "average"]
    assert len(average) == 1
    assert average[0]["dev"]["an4"]["cer"] < 0.10, average[0]
    # the first epoch could not do this: the model learned
    assert rows[0]["dev"]["an4"]["cer"] > 0.5
    # independent check: decode the real clips with the saved model and score with jiwer
    utts = read_manifest(MANIFEST)
    transcriber = Transcriber.from_pretrained(overfit_model, device="cpu")
    hyps = [r.text for r in transcriber.transcribe_files([u.audio_path for u in utts], with_words=False)]
    assert jiwer.cer([u.text for u in utts], hyps) < 0.10, hyps


def test_intermediate_ctc_overfits_both_outputs(tmp_path):
    """Intermediate CTC after layer 1 of 2 (weight 0.5) on the five real clips: the top output still
    memorises them, and the shared output layer reads them from the first layer's states too."""
    path = train_overfit(tmp_path / "run", inter_ctc_weight=0.5, inter_ctc_layer=1)
    rows = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert epochs[-1]["train_inter_ctc_loss"] < 0.2 * epochs[0]["train_inter_ctc_loss"]
    assert rows[-1]["dev"]["an4"]["cer"] < 0.10 and epochs[0]["dev"]["an4"]["cer"] > 0.5
    # greedy reading of the intermediate output of the saved model, scored with jiwer
    model = load_model(path).model.eval()
    tokenizer, frontend = CharTokenizer(), LogMel()
    utts = read_manifest(MANIFEST)
    hyps = []
    for utt in utts:
        wave = torch.as_tensor(load_audio(utt.audio_path))[None]  # (1, samples)
        with torch.no_grad():
            feats, frames = frontend(wave, torch.tensor([wave.shape[1]]))
            _, lengths, middle = model(model.cmvn(feats, frames), frames, intermediate_layer=1)
        hyps.append(tokenizer.decode(greedy_decode(middle, lengths)[0]))
    assert jiwer.cer([u.text for u in utts], hyps) < 0.10, hyps


def test_intermediate_ctc_settings_are_checked(tmp_path):
    from asr.train import ConfigError, intermediate_ctc_layer

    config = tmp_path / "train.yaml"
    config.write_text("model: {num_layers: 3}\noptim: {inter_ctc_weight: 0.3}\n")
    assert intermediate_ctc_layer(TrainConfig.from_yaml(config)) == 2  # the middle by default
    assert intermediate_ctc_layer(TrainConfig.from_yaml(config, ["optim.inter_ctc_layer=1"])) == 1
    assert intermediate_ctc_layer(TrainConfig.from_yaml(config, ["optim.inter_ctc_weight=0"])) == 0
    for override, message in [("optim.inter_ctc_weight=1.0", r"inter_ctc_weight must be in \[0, 1\), got 1.0"),
                              ("optim.inter_ctc_layer=3", "inter_ctc_layer must be between 1 and 2"),
                              ("model.num_layers=1", "inter_ctc_weight needs model.num_layers >= 2")]:
        with pytest.raises(ConfigError, match="train.yaml: .*" + message):
            TrainConfig.from_yaml(config, [override])


# --- checkpoints --------------------------------------------------------------------------------------


def test_load_model_round_trip(overfit_model, tmp_path):
    loaded = load_model(overfit_model)
    assert not loaded.model.training
    assert loaded.path == overfit_model
    assert loaded.tokenizer.vocab == CharTokenizer().vocab
    assert loaded.feature_config.n_mels == 80 and loaded.feature_config.sample_rate == 16000
    assert loaded.model.config.hidden_size == loaded.info["config"]["model"]["hidden_size"]
    raw = read_checkpoint(overfit_model)
    assert raw["format"] == FORMAT
    assert_same_tensors(loaded.model.state_dict(), raw["state_dict"])
    # write it back out and read it again: identical weights and outputs
    copy = tmp_path / "copy.pt"
    atomic_torch_save(raw, copy)
    again = load_model(copy)
    assert_same_tensors(again.model.state_dict(), loaded.model.state_dict())
    wave = load_audio(DATA / "an4" / "an2-mblw-b.flac")
    a = Transcriber(loaded, device="cpu").log_probs([wave])[0]
    b = Transcriber(again, device="cpu").log_probs([wave])[0]
    assert torch.equal(a, b)


def test_truncated_checkpoint(overfit_model, tmp_path):
    data = overfit_model.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_model(cut)
    assert str(cut) in str(info.value) and "\n" not in str(info.value)


def test_random_bytes_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError) as info:
        load_model(junk)
    assert str(junk) in str(info.value) and "\n" not in str(info.value)


def test_other_bad_checkpoints(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_model(missing)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*not an asr checkpoint"):
        load_model(foreign)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        load_model(empty)


def test_checkpoint_with_code_is_refused(tmp_path):
    # weights_only loading: a pickle that would run code is rejected, not executed
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "ran"
    torch.save({"format": FORMAT, "payload": Exploit(str(marker))}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        read_checkpoint(evil)
    assert not marker.exists()


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_mismatched_weights(overfit_model, tmp_path):
    state = read_checkpoint(overfit_model)
    state["model_config"] = {**state["model_config"], "hidden_size": state["model_config"]["hidden_size"] + 1}
    bad = tmp_path / "bad_config.pt"
    atomic_torch_save(state, bad)
    with pytest.raises(CheckpointError, match="bad_config.pt"):
        load_model(bad)


def test_export_for_inference(overfit_model, tmp_path):
    src = overfit_model.parent / "last.pt"  # holds optimizer state
    dst = tmp_path / "small.pt"
    export_for_inference(src, dst)
    assert dst.stat().st_size < 0.5 * src.stat().st_size
    exported = read_checkpoint(dst)
    assert "training_state" not in exported
    assert all(v.dtype == torch.float16 for v in exported["state_dict"].values() if v.is_floating_point())
    paths = [u.audio_path for u in read_manifest(MANIFEST)]
    full = Transcriber.from_pretrained(src, device="cpu")
    small = Transcriber.from_pretrained(dst, device="cpu")
    assert small.model.output.weight.dtype == torch.float32  # loaded back as float32 for CPU inference
    texts = [r.text for r in full.transcribe_files(paths, with_words=False)]
    assert [r.text for r in small.transcribe_files(paths, with_words=False)] == texts
    assert any(texts)


REPO = Path(__file__).resolve().parents[1]


def test_yaml_typos_are_refused_naming_the_setting(tmp_path):
    from asr.train import ConfigError

    config = tmp_path / "train.yaml"
    config.write_text("model:\n  hiden_size: 64\n")
    with pytest.raises(ConfigError, match=r"train.yaml: unknown setting model.hiden_size .*hidden_size"):
        TrainConfig.from_yaml(config)
    config.write_text("epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'epochs'"):
        TrainConfig.from_yaml(config)
    config.write_text("data: [a, b]\n")
    with pytest.raises(ConfigError, match="data must be a mapping"):
        TrainConfig.from_yaml(config)
    config.write_text("model: {hidden_size: 64\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(config)


def test_overrides_are_typed_and_checked(monkeypatch):
    from asr.train import ConfigError

    monkeypatch.setenv("EXP", "exp/x")
    base = REPO / "recipes/default/conf/cmn_probe.yaml"
    config = TrainConfig.from_yaml(base, ["model.utterance_mean=true", "seed=3", "optim.lr=5e-4",
                                          "augment.speed_factors=[0.8, 1.2]", "out_dir=${EXP}/b"])
    assert config.model.utterance_mean is True and config.seed == 3 and config.optim.lr == 5e-4
    assert config.augment.speed_factors == [0.8, 1.2] and config.out_dir == "exp/x/b"
    assert TrainConfig.from_yaml(base).model.utterance_mean is False  # the file itself is unchanged
    assert TrainConfig.from_yaml(base, ["augment.min_gain_db=-20"]).augment.min_gain_db == -20.0
    assert TrainConfig.from_yaml(base, ["augment.min_gain_db=null"]).augment.min_gain_db is None  # optional
    for bad, problem in [("model.hiden_size=3", "unknown setting model.hiden_size"),
                         ("model", "not KEY=VALUE"), ("seed.x=1", "seed is not a section"),
                         ("optim.lr=[1,", "not valid YAML"), ("optim.lr=fast", "optim.lr must be a number"),
                         ("optim.epochs=2.5", "optim.epochs must be a whole number"),
                         ("model.utterance_mean=1", "model.utterance_mean must be true or false"),
                         ("augment.min_gain_db=loud", "augment.min_gain_db must be a number")]:
        with pytest.raises(ConfigError, match=re.escape(problem)):
            TrainConfig.from_yaml(base, [bad])


def test_every_recipe_config_is_valid(monkeypatch):
    import yaml

    monkeypatch.setenv("EXP", "exp/x")
    from asr.hybrid.train import HybridTrainConfig
    from asr.search.train import AutoencoderTrainConfig

    readers = {"ctc": TrainConfig.from_yaml, "hybrid": HybridTrainConfig.from_yaml,
               "autoencoder": AutoencoderTrainConfig.from_yaml}
    checked = {task: 0 for task in readers}
    for path in sorted(REPO.glob("recipes/*/conf/*.yaml")):
        task = (yaml.safe_load(path.read_text()) or {}).get("task", "ctc")
        readers[task](path)
        checked[task] += 1
    assert checked["ctc"] >= 5 and checked["hybrid"] >= 2 and checked["autoencoder"] >= 1


def test_a_bad_override_is_one_line_naming_the_file_once_for_every_task(capsys):
    from asr.cli import main

    for config in ("recipes/default/conf/finetune.yaml", "recipes/default/conf/hybrid.yaml",
                   "recipes/search/conf/plain.yaml"):
        assert main(["train", "--config", str(REPO / config), "--set", "optim"]) == 1
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.count(config) == 1 and "is not KEY=VALUE" in line, line


def test_hybrid_and_autoencoder_configs_take_overrides(monkeypatch):
    """`asr train --set` works for every task: the value lands in the config, the file is untouched."""
    from asr.hybrid.train import HybridTrainConfig
    from asr.search.train import AutoencoderTrainConfig
    from asr.train import ConfigError, TrainingDataError

    monkeypatch.setenv("EXP", "exp/x")
    hybrid_yaml = REPO / "recipes/default/conf/hybrid.yaml"
    hybrid = HybridTrainConfig.from_yaml(hybrid_yaml, ["optim.epochs=2", "topology.states_per_char=3", "seed=4"])
    assert hybrid.optim["epochs"] == 2 and hybrid.topology["states_per_char"] == 3 and hybrid.seed == 4
    assert hybrid.optim["lr"] == HybridTrainConfig.from_yaml(hybrid_yaml).optim["lr"]  # other keys kept
    assert HybridTrainConfig.from_yaml(hybrid_yaml).optim["epochs"] != 2
    ae_yaml = REPO / "recipes/search/conf/plain.yaml"
    ae = AutoencoderTrainConfig.from_yaml(ae_yaml, ["seed=7"])
    assert ae.seed == 7 and AutoencoderTrainConfig.from_yaml(ae_yaml).seed != 7
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        HybridTrainConfig.from_yaml(hybrid_yaml, ["epochs"])
    with pytest.raises(TrainingDataError, match=r"hybrid.yaml: unknown setting optim.epoch in a hybrid config .*epochs"):
        HybridTrainConfig.from_yaml(hybrid_yaml, ["optim.epoch=3"])  # a typo is refused, not silently ignored
    with pytest.raises(TrainingDataError, match="head must be a mapping"):
        HybridTrainConfig.from_yaml(hybrid_yaml, ["head=3"])


def test_cmvn_statistics_are_gathered_after_the_utterance_mean():
    """With utterance_mean the global statistics describe centred features: mean 0, and a variance
    below the plain statistics' (the between-utterance spread is gone)."""
    from asr.features import LogMel
    from asr.model import BiLSTMCTC, ModelConfig
    from asr.train import compute_cmvn

    utterances = read_manifest(Path(__file__).parent / "data" / "an4_mblw.tsv")
    dataset = SpeechDataset(utterances, CharTokenizer())
    stats = {}
    for centred in (False, True):
        model = BiLSTMCTC(ModelConfig(hidden_size=8, num_layers=1, utterance_mean=centred))
        compute_cmvn(model, dataset, LogMel(), torch.device("cpu"), batch_size=2)
        stats[centred] = (model.cmvn.mean.clone(), model.cmvn.inv_std.clone())
    assert stats[True][0].abs().max() < 1e-3
    assert stats[False][0].abs().min() > 1.0  # raw log-mel means are far from 0
    assert (stats[True][1] >= stats[False][1] - 1e-6).all()  # smaller spread, larger inverse std
