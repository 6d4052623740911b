"""The audit's checks: know the data before training (D1-D8).

One module per check, named by its practice ID: d1_classes, d2_sizes, d3_samples,
d4_normalisation, d5_duplicates, d6_validity, d7_augmentation, d8_time_estimate. They
read the per-split scans (`scan`: one pass over the data, with `inputs` for content
hashing and `neighbours` for near-duplicate search). D4 and D7 are shown by
`danlu check` too. Run them with `danlu.checks.run_checks(recipe, "audit")` or
`danlu audit RECIPE`.
"""
