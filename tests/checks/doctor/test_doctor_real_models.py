"""The doctor on model code of the kinds users bring (issue 11): quiet on the healthy, loud on the broken.

Clean recipes (tests/checks/doctor/recipes/model_*.py) are built on real architectures: a
ResNet and a VisionTransformer on small images, a VAE (tuple output, sampling by design), a
word-level LSTM language model (SGD at lr 20 with clipping, outputs [B, T, V]), a GRU
classifier that learns slowly at the default learning rate, a binary MLP with BCE on float
targets, a regression MLP, a transformer encoder for sequence classification, a per-pixel
segmentation head, a model with a dict of heads and a mean-and-variance regression head trained
with Gaussian NLL (output [B, 2] against target [B, 1], losses below 0). Each runs every check once (cached).
No check may fail or crash on them; every warning that remains is named and justified here.
"""

from __future__ import annotations

import math

import pytest
from doctor_helpers import by_name, check, finding, recipe_path

from danlu.checks import run_checks
from danlu.checks.doctor.s2_s3_overfit import OverfitBatch
from danlu.recipe import load_recipe

MODELS = ["model_resnet", "model_vit", "model_vae", "model_lstm_lm", "model_word_lm", "model_gru", "model_binary",
          "model_regression", "model_transformer", "model_segmentation", "model_dict_heads", "model_gaussian_nll"]

#: Warnings a practitioner would agree with, and why.
JUSTIFIED = {
    ("model_vae", "S6"): "the VAE samples z in eval too, by design: validation numbers vary between evaluations",
}

_reports: dict = {}


def report_for(name: str):
    if name not in _reports:
        _reports[name] = run_checks(load_recipe(recipe_path(name)))
    return _reports[name]


@pytest.mark.parametrize("name", MODELS)
def test_real_model_gives_no_fail_and_no_unjustified_warning(name):
    report = report_for(name)
    for f in report.findings:
        assert "danlu's check crashed" not in f.summary, f"{f.id} crashed inside danlu on {name}: {f.summary}"
        if f.status == "fail" or (f.status == "warn" and (name, f.id) not in JUSTIFIED):
            pytest.fail(f"{name}: {f.id} {f.status}: {f.summary} | {f.cause}")
    for (model, cid), why in JUSTIFIED.items():
        if model == name:
            assert finding(report, cid).status == "warn", why


def test_sequence_outputs_are_read_along_the_vocabulary():
    """[B, T, V] against [B, T]: 60 classes (the vocabulary), not 20 (the sequence length)."""
    report = report_for("model_lstm_lm")
    assert "< 60 outputs" in finding(report, "S13").summary
    s4 = finding(report, "S4")
    assert s4.evidence["theory"] == pytest.approx(math.log(60))
    assert finding(report, "S7").evidence["classes"] == 60


def test_per_pixel_outputs_count_classes_on_dim_1_and_fit_at_99_percent_of_pixels():
    report = report_for("model_segmentation")
    assert "< 3 outputs" in finding(report, "S13").summary
    assert finding(report, "S4").evidence["theory"] == pytest.approx(math.log(3))
    s2 = finding(report, "S2")
    assert s2.status == "pass" and s2.evidence["accuracy"] >= 0.99


def test_a_slow_learner_is_answered_fairly_with_the_rate_it_needed():
    s2 = finding(report_for("model_gru"), "S2")
    assert s2.status == "info" and s2.evidence["lr_scale"] > 1
    assert "the recipe's 0.0003" in s2.summary and "had not fit after 400 steps" in s2.summary
    assert finding(report_for("model_gru"), "S5").status == "pass"     # S5 trained at the rate S2 found


def test_a_language_model_on_the_word_frequency_plateau_is_slow_not_broken():
    """pytorch/examples' LSTM language model at AdamW 3e-3 does not reach zero loss on 20 windows in
    400 steps at any rate S2 tries (it sat on the unigram plateau), but it goes far below what any
    prediction blind to the input can reach: S2 says so instead of "cannot fit", and S5, starting
    from the rate S2 found fastest, sees the inputs help."""
    report = report_for("model_word_lm")
    s2 = finding(report, "S2")
    assert s2.status == "info" and not any(a["reached"] for a in s2.evidence["attempts"])
    assert s2.evidence["last_loss"] < OverfitBatch.blind_share * s2.evidence["blind"]
    assert s2.evidence["last_loss"] == min(a["last_loss"] for a in s2.evidence["attempts"])   # the best rate's
    assert f"lr {s2.evidence['lr']:.2g} (the best of" in s2.summary and "fits from its inputs" in s2.summary
    assert finding(report, "S5").status == "pass"
    alone = finding(check("model_word_lm", "S5"), "S5")      # without S2's rate: S5 tries higher ones itself
    assert alone.status == "info" and len(alone.evidence["attempts"]) > 1
    assert alone.evidence["lr"] > alone.evidence["attempts"][0]["lr"]


def test_s5_gives_a_slow_learner_more_time_at_a_higher_rate():
    """Where a language model leaves its plateau varies from run to run (pytorch/examples' LSTM
    with its tuple output failed S5 at 400 steps and passed at 800): a higher rate may train up
    to twice S5.max_steps, and a clear result still stops it early."""
    s5 = finding(check("model_word_lm", "S5", settings={"S5.max_steps": 100}), "S5")
    first, *higher = s5.evidence["attempts"]
    assert first["steps"] == 100 and first["t"] < 3
    assert s5.status == "info" and max(a["steps"] for a in higher) > 100


def test_a_language_model_handing_its_tuple_to_the_loss_stays_quiet():
    report = run_checks(load_recipe(recipe_path("model_word_lm"), ["tuple_output=true"]), only="S2,S3,S5")
    loud = [(f.id, f.status, f.summary) for f in report.findings if f.status in ("warn", "fail")]
    assert loud == []
    assert finding(report, "S2").evidence["floor"] is None      # a tuple: the floor is unknown


def test_recurrent_model_with_clipping_overfits_with_its_real_step():
    """SGD at lr 20 is only sane with the recipe's gradient clipping (0.25), which the checks now take."""
    report = report_for("model_lstm_lm")
    assert finding(report, "S2").status == "pass" and finding(report, "S3").status == "pass"


def test_tuple_outputs_work_through_the_recipes_loss_or_skip_with_the_reason():
    report = report_for("model_vae")
    s2 = finding(report, "S2")
    assert s2.status in ("pass", "info") and s2.evidence["floor"] is None   # the loss has no known floor
    assert finding(report, "S10").status == "pass"                           # every batched output leaf
    assert finding(report, "S5").status == "pass"
    for cid in ("S4", "S7"):
        f = finding(report, cid)
        assert f.status == "skip" and "tuple, not a tensor" in f.summary


def test_sampling_by_design_warns_and_names_the_call():
    s6 = finding(report_for("model_vae"), "S6")
    assert s6.status == "warn" and "torch.randn_like" in s6.summary and "model_vae.py" in s6.summary
    mc = finding(check("mc_dropout", "S6"), "S6")
    assert mc.status == "warn" and "F.dropout" in mc.summary
    bug = finding(check("mc_dropout", "S6", ["explicit=false"]), "S6")
    assert bug.status == "fail"                       # F.dropout left at its default: the classic bug


def test_a_zero_initialised_class_token_is_not_an_exploding_gradient():
    s8 = finding(report_for("model_vit"), "S8")
    assert s8.status == "pass" and "exploding" not in s8.summary
    cls = next(layer for layer in s8.evidence["layers"] if layer["name"] == "cls")
    assert cls["grad_rel"] is None
    assert finding(check("exploding", "S8"), "S8").status == "warn"     # a real explosion still warns


def test_layers_in_a_plain_list_are_named():
    f = finding(check("plain_list_layers", "S8"), "S8")
    assert f.status == "fail" and "blocks[0] (Linear)" in f.summary
    assert "heads['digit'] (Linear)" in f.evidence["unregistered"]
    assert "nn.ModuleList" in f.fix
    assert finding(check("plain_list_layers", "S8", ["registered=true"]), "S8").status == "pass"


def test_a_loss_that_cannot_move_never_passes():
    report = check("mse_broadcast", "S2,S3,S5")
    for cid in ("S2", "S3"):
        f = finding(report, cid)
        assert f.status == "fail" and "cannot go down" in f.summary
    assert finding(report, "S5").status != "pass"
    healthy = check("clean_regression", "S2,S5")
    assert finding(healthy, "S2").status == "pass" and finding(healthy, "S5").status == "pass"


def test_a_decoder_too_small_for_the_vocabulary_fails_s13():
    f = finding(check("model_lm_short_decoder", "S13"), "S13")
    assert f.status == "fail" and "labels go up to 59 but the model has 50 outputs" in f.summary


def test_an_autoencoder_whose_target_is_its_input_is_not_beaten_by_zeros():
    """pytorch/examples' VAE makes its target from the input in the training step. S5's zero-input
    model is scored against the real input: zeroing both let it predict zeros perfectly, and S5
    failed a healthy model. The same model with its code cut from the input still fails."""
    clean = finding(check("autoencoder", "S5"), "S5")
    assert clean.status == "pass" and clean.evidence["loss_zero"] > clean.evidence["loss_real"] > 0
    blind = finding(check("autoencoder", "S5", ["bug=blind"]), "S5")
    assert blind.status == "fail" and blind.evidence["output_change_when_zeroed"] == 0.0


def test_the_report_leads_with_the_root_cause():
    report = check("plain_list_layers", "S8,S2,S3")
    root = report.meta["root_cause"]
    assert root["id"] == "S8" and set(root["follows"]) == {"S2", "S3"}
    assert finding(report, "S2").evidence["follows_from"] == "S8"
    nan = check("sqrt_backward", "S8,S9,S2,S3")
    assert nan.meta["root_cause"]["id"] == "S9"
    assert "root_cause" not in check("clean", "S2,S3").meta       # nothing wrong, nothing to lead with
    shown = by_name(report, "overfit one batch")
    assert shown.status == "warn"    # a head on untrained random layers memorises but stalls; S8 says why


def test_the_terminal_says_where_to_start(capsys):
    from danlu.console import console
    from danlu.render import print_report

    print_report(check("plain_list_layers", "S8,S2,S3"), console)
    out = " ".join(capsys.readouterr().out.split())
    assert "start here: S8 gradients fails; S2, S3 probably follow from it" in out
    assert "(probably follows from S8)" in out
