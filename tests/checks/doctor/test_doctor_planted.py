"""Every check fires on its planted bug (tests/checks/doctor/recipes/*.py) with the documented status.

Each test runs only the check(s) it is about, so the whole file takes seconds.
"""

from __future__ import annotations

import pytest
from doctor_helpers import by_name, check, finding


# --------------------------------------------------------------------- data (S13, D6, D7, D4)
def test_s13_labels_out_of_range_fail():
    f = finding(check("labels_out_of_range", "S13"), "S13")
    assert f.status == "fail"
    assert "labels go up to 10 but the model has 10 outputs" in f.summary
    assert "0..9" in f.fix and f.cause


def test_s13_nan_inputs_fail_with_indices():
    f = finding(check("nan_inputs", "S13"), "S13")
    assert f.status == "fail" and "NaN/Inf inputs" in f.summary
    assert f.evidence["train_nonfinite_inputs"][:3] == [100, 101, 102]


def test_d7_validation_augmentation_fails():
    f = finding(check("val_augmentation", "D7"), "D7")
    assert f.status == "fail"
    assert f.evidence["val_items_differing"] and "augmentation" in f.cause


def test_d7_unshuffled_class_sorted_fails_and_unsorted_warns():
    sorted_ = by_name(check("unshuffled", "D7"), "shuffling")
    assert sorted_.status == "fail" and "grouped by class" in sorted_.summary
    plain = by_name(check("unshuffled", "D7", ["sort=false"]), "shuffling")
    assert plain.status == "warn" and "does not shuffle" in plain.summary
    assert "shuffle=True" in plain.fix


def test_d4_raw_pixels_warn():
    f = finding(check("raw_pixels", "D4"), "D4")
    assert f.status == "warn"
    assert f.evidence["max"] == pytest.approx(255.0)
    assert "raw 0-255" in f.cause and "Normalise" in f.fix


# --------------------------------------------------------------------- model (S1, S6)
def test_s1_big_model_warns():
    f = finding(check("big_model", "S1"), "S1")
    assert f.status == "warn" and f.evidence["trainable"] > 1_000_000
    assert "--set S1.max_params" in f.fix


def test_s1_threshold_is_a_setting():
    f = finding(check("big_model", "S1", settings={"S1.max_params": "5e6"}), "S1")
    assert f.status == "pass"


@pytest.mark.parametrize("variant, phrase", [
    ("forward", "switched to eval mode by the forward pass"),
    ("train_override", "stays in eval mode after model.train()"),
    ("recipe_forward", "switched to eval mode by the forward pass"),
])
def test_s6_module_stuck_in_eval_fails(variant, phrase):
    f = finding(check("stuck_eval", "S6", [f"variant={variant}"]), "S6")
    assert f.status == "fail" and "run in eval mode during training" in f.summary
    assert phrase in f.cause


def test_s6_functional_dropout_in_eval_fails_naming_the_module():
    f = finding(check("dropout_misuse", "S6"), "S6")
    assert f.status == "fail" and "eval-mode outputs differ" in f.summary
    assert f.evidence["eval_random_module"] == "1"  # the Head whose forward calls F.dropout
    assert "training=self.training" in f.fix


# --------------------------------------------------------------------- loss (S4, S7)
def test_s7_softmax_before_cross_entropy_fails():
    report = check("softmax_ce", "S7,S4")
    f = finding(report, "S7")
    assert f.status == "fail" and "softmax" in f.summary and "return logits" in f.fix
    # S4 cannot see it: softmax outputs near 1/C give CE = ln C at the start (documented).
    assert finding(report, "S4").status == "pass"


def test_s4_and_s7_nll_on_probabilities_fail():
    report = check("nll_on_probs", "S4,S7")
    assert finding(report, "S4").status == "fail" and "negative" in finding(report, "S4").summary
    assert finding(report, "S7").status == "fail" and "nll_loss" in finding(report, "S7").summary


def test_s7_mse_broadcast_fails():
    f = finding(check("mse_broadcast", "S7"), "S7")
    assert f.status == "fail" and "broadcast" in f.summary
    assert f.evidence["output_shape"] == [32, 1] and f.evidence["target_shape"] == [32]


def test_s7_a_custom_loss_that_mixes_samples_through_a_broadcast_fails():
    """A mean-and-variance head is not a bug (model_gaussian_nll passes); its loss comparing mean [B,1]
    with target [B] is: every sample's gradient then depends on the other samples' targets."""
    f = finding(check("gaussian_nll_broadcast", "S7"), "S7")
    assert f.status == "fail" and "the loss mixes samples" in f.summary and "[B,B]" in f.cause
    assert f.evidence["loss_couples_samples"] is True
    clean = finding(check("model_gaussian_nll", "S7,S13"), "S7")
    assert clean.status == "pass" and clean.evidence["loss_couples_samples"] is False


def test_s7_and_s4_sum_reduced_loss_fail():
    report = check("sum_loss", "S7,S4")
    s7, s4 = finding(report, "S7"), finding(report, "S4")
    assert s7.status == "fail" and "summed" in s7.summary
    assert s7.evidence["per_sample_ratio"] == pytest.approx(32, rel=1e-3)
    assert s4.status == "fail" and "grows with the batch size" in s4.summary


def test_s4_raw_pixels_initial_loss_too_high_warns():
    f = finding(check("raw_pixels", "S4"), "S4")
    assert f.status in ("warn", "fail") and f.evidence["ratio"] > 1.5
    assert "D4" in f.cause


# --------------------------------------------------------------------- gradients (S8, S10)
def test_s8_unused_parameter_fails():
    f = finding(check("unused_param", "S8"), "S8")
    assert f.status == "fail" and f.evidence["no_gradient"] == ["extra.weight", "extra.bias"]


def test_s8_parameter_missing_from_optimizer_fails():
    f = finding(check("missing_from_optimizer", "S8"), "S8")
    assert f.status == "fail" and f.evidence["not_in_optimizer"] == ["3.weight", "3.bias"]


def test_s8_vanishing_gradients_warn():
    f = finding(check("vanishing", "S8"), "S8")
    assert f.status == "warn" and "vanishing gradients" in f.summary
    assert f.evidence["grad_rms_spread"] < 1e-4


def test_s8_exploding_gradients_warn():
    f = finding(check("exploding", "S8"), "S8")
    assert f.status == "warn" and "exploding" in f.summary


def test_s10_view_instead_of_permute_fails():
    f = finding(check("batch_mixing", "S10"), "S10")
    assert f.status == "fail" and "depends on the inputs of samples" in f.summary
    assert "permute" in f.fix


# --------------------------------------------------------------------- numerics (S9)
@pytest.mark.parametrize("op", ["log", "div"])
def test_s9_forward_nan_names_phase_module_and_line(op):
    f = finding(check("bad_math", "S9", [f"op={op}"]), "S9")
    assert f.status == "fail"
    ev = f.evidence
    assert ev["phase"] == "forward" and ev["module"] == "features.norm" and ev["op"] == op
    assert ev["where"].split(":")[0].endswith("bad_math.py") and ev["step"] == 0
    assert ev["samples"]  # the batch rows involved


def test_s9_backward_nan_names_the_sqrt():
    f = finding(check("sqrt_backward", "S9"), "S9")
    assert f.status == "fail"
    ev = f.evidence
    assert ev["phase"] == "backward" and ev["module"] == "edges" and "SqrtBackward" in ev["op"]
    assert "sqrt_backward.py" in ev["where"]
    assert "epsilon" in f.fix


def test_s9_nan_in_data_is_phase_data():
    f = finding(check("nan_inputs", "S9"), "S9")
    assert f.status == "fail" and f.evidence["phase"] == "data"


# --------------------------------------------------------------------- training (S2, S3, S5)
def test_s5_labels_shuffled_separately_fail():
    f = finding(check("shuffled_labels", "S5"), "S5")
    assert f.status == "fail" and f.evidence["gain"] <= 0


def test_s5_model_ignoring_its_input_fails():
    f = finding(check("ignores_input", "S5"), "S5")
    assert f.status == "fail"
    assert f.evidence["output_change_when_zeroed"] == 0.0 and "ignores the input" in f.cause


def test_s2_cannot_overfit_with_softmax_before_cross_entropy():
    # A floor above zero (CE on probabilities) with a budget too small to memorise: not a pass.
    f = finding(check("softmax_ce", "S2", settings={"S2.max_steps": 60}), "S2")
    assert f.status in ("warn", "fail") and f.evidence["last_loss"] > 1.0


def test_s3_fails_when_the_model_ignores_its_input():
    f = finding(check("ignores_input", "S3", settings={"S3.max_steps": 150}), "S3")
    assert f.status == "fail" and "cannot fit 10 samples" in f.summary


def test_a_language_model_blind_to_its_tokens_fails_s2_and_s5():
    """The slow language model that must stay quiet (model_word_lm) with its tokens replaced by zeros:
    the loss stops at what position alone can give, and the output does not react to the input."""
    report = check("word_lm_bugs", "S2,S5", ["bug=blind"])
    s2 = finding(report, "S2")
    assert s2.status == "fail" and "cannot fit 20 samples" in s2.summary
    assert s2.evidence["last_loss"] > s2.evidence["blind"]     # blind to its tokens: never below that predictor
    s5 = finding(report, "S5")
    assert s5.status == "fail" and s5.evidence["output_change_when_zeroed"] == 0.0
    assert len(s5.evidence["attempts"]) == 1           # an output blind to its input earns no higher rates


def test_s5_misaligned_language_model_windows_fail_at_every_rate_tried():
    """Targets shuffled apart from their windows: a batch can be memorised (S2 is no help), and no rate
    makes the held-out loss better than with zeroed inputs."""
    s5 = finding(check("word_lm_bugs", "S5", ["bug=misaligned"]), "S5")
    assert s5.status == "fail"
    assert [round(a["lr"] / s5.evidence["attempts"][0]["lr"]) for a in s5.evidence["attempts"]] == [1, 3, 10]
    assert "rates tried" in s5.summary


# --------------------------------------------------------------------- determinism (S11)
def test_s11_nondeterministic_data_content_fails():
    f = finding(check("nondeterministic_data", "S11"), "S11")
    assert f.status == "fail" and f.evidence["differs"] == ["data content"]


def test_s11_nondeterministic_init_fails():
    f = finding(check("nondeterministic_init", "S11"), "S11")
    assert f.status == "fail" and f.evidence["differs"] == ["model init"]


# --------------------------------------------------------------------- speed (S12)
def test_s12_slow_getitem_warns_with_profile_and_workers(one_thread):
    f = finding(check("slow_getitem", "S12", settings={"S12.max_batches": 3, "S12.profile_items": 8}), "S12")
    assert f.status == "warn" and "data loading takes" in f.summary
    assert any("sleep" in line for line in f.evidence["profile_top"])
    assert any("decode_image" in line for line in f.evidence["profile_top"])
    assert f.evidence["suggested_workers"] >= 2 and "num_workers=" in f.fix


def test_s5_names_a_target_that_reaches_the_forward_pass():
    """A model that is handed the answer does as well with zeroed inputs: S5 fails and says the
    target reaches the forward pass; the same model without the leak passes."""
    leaky = finding(check("target_leak", only="S5"), "S5")
    assert leaky.status == "fail" and "gets the answer another way" in leaky.cause, (leaky.summary, leaky.cause)
    clean = finding(check("target_leak", only="S5", overrides=["leak=false"]), "S5")
    assert clean.status == "pass", clean.summary
