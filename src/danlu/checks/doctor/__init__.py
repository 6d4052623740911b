"""The doctor's checks: preflight sanity experiments before a long run (S1-S14; with D4, D7).

One module per check, named by its practice ID: s1_model_size, s2_s3_overfit,
s4_initial_loss, s5_input_dependence, s6_train_eval_mode, s7_outputs_fit_loss,
s8_gradients, s9_nonfinite, s10_batch_independence, s11_determinism, s12_speed,
s13_data_interface, s14_multi_device (when asked: --nproc N); `measure` holds the measurements several of them share.
Run them with `danlu.checks.run_checks(recipe)` or `danlu check RECIPE`.
"""
