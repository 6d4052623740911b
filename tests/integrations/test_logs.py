"""Other tools' logs in and out (issue 13): TensorBoard event files written by PyTorch's own
SummaryWriter, Lightning's CSV layout, JSON lines; export -> import keeps every point."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from danlu.cli import main
from danlu.errors import DanluError
from danlu.integrations import export_runs, import_logs
from danlu.integrations.eventfile import EventFileError, read_scalars


def _write_tensorboard(folder, steps=30, new_style=False):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for step in range(steps):
        writer.add_scalar("train_loss", 2.0 * math.exp(-step / 10) + 0.1, step, new_style=new_style)
        if step % 5 == 4:
            writer.add_scalar("val_loss", 2.1 * math.exp(-step / 12) + 0.15, step, new_style=new_style)
    writer.add_histogram("weights", np.arange(10.0), 0)   # not a scalar: skipped
    writer.close()


@pytest.mark.parametrize("new_style", [False, True])
def test_event_files_from_pytorchs_summary_writer_become_runs(tmp_path, store, new_style):
    _write_tensorboard(tmp_path / "logs" / "exp1", new_style=new_style)
    _write_tensorboard(tmp_path / "logs" / "exp2", steps=12, new_style=new_style)
    results = import_logs(store, tmp_path / "logs", "tensorboard")
    assert [(r.name, r.series, r.points) for r in results] == [("logs/exp1", 2, 36), ("logs/exp2", 2, 14)]
    record = store.get_run("logs/exp1")
    assert record.status == "finished" and "source:tensorboard" in record.tags
    steps, values = store.read_series(record.id, "train_loss")
    assert steps.tolist() == list(range(30))
    expected = np.array([2.0 * math.exp(-s / 10) + 0.1 for s in range(30)], dtype=np.float32)
    assert np.array_equal(values.astype(np.float32), expected)   # float32 in the file, every point kept
    again = import_logs(store, tmp_path / "logs", "tensorboard")
    assert [r.skipped for r in again] == ["already imported"] * 2


def test_an_imported_run_is_diagnosed_like_a_trained_one(tmp_path, store, capsys):
    _write_tensorboard(tmp_path / "tb")
    assert main(["import", "tensorboard", str(tmp_path / "tb"), "--store", str(store.root)]) == 0
    assert "imported tb" in capsys.readouterr().out
    code = main(["diagnose", "tb", "--json", "--no-plot", "--store", str(store.root)])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["kind"] == "diagnosis" and report["findings"]


def test_lightning_csv_logs_with_hparams(tmp_path, store):
    version = tmp_path / "lightning_logs" / "version_0"
    version.mkdir(parents=True)
    (version / "metrics.csv").write_text(
        "epoch,step,train_loss,val_loss\n0,9,0.9,\n0,9,,0.95\n1,19,0.5,\n1,19,,0.61\n2,29,0.3,\n")
    (version / "hparams.yaml").write_text("lr: 0.001\nhidden: 64\nname: mlp\nnested:\n  a: 1\n")
    (result,) = import_logs(store, tmp_path / "lightning_logs", "csv")
    assert result.name == "lightning_logs/version_0" and not result.skipped
    record = store.get_run(result.run_id)
    assert record.config == {"lr": 0.001, "hidden": 64, "name": "mlp"}
    assert store.read_series(record.id, "train_loss")[0].tolist() == [9, 19, 29]
    assert store.read_series(record.id, "val_loss")[1].tolist() == [0.95, 0.61]
    assert store.read_series(record.id, "epoch")[1].tolist() == [0.0, 1.0, 2.0]


def test_json_lines_name_config_and_errors(tmp_path, store):
    path = tmp_path / "log.jsonl"
    path.write_text('{"name": "mine", "config": {"lr": 0.1}}\n{"step": 1, "loss": 1.5, "wall": 100.0}\n'
                    '{"step": 2, "loss": 1.25, "note": "text is not a series"}\n')
    (result,) = import_logs(store, path, "jsonl")
    assert (result.name, result.points) == ("mine", 2)
    assert store.get_run("mine").config == {"lr": 0.1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "loss": 1}\n{oops\n')
    with pytest.raises(DanluError, match=r"bad.jsonl:2: not JSON"):
        import_logs(store, bad, "jsonl")
    with pytest.raises(DanluError, match="No metrics.csv files"):
        import_logs(store, tmp_path, "csv")


@pytest.mark.parametrize("fmt", ["tensorboard", "csv", "jsonl"])
def test_export_then_import_keeps_every_point(tmp_path, store, fmt):
    from danlu.store import open_store

    run = store.create_run(name="source", config={"lr": 0.01, "depth": 3})
    rng = np.random.default_rng(0)
    points = [("train/loss", s, float(rng.random()), 1000.0 + s) for s in range(1, 200)]
    points += [("val/loss", s, float(rng.random()), 1000.5 + s) for s in range(10, 200, 10)]
    points += [("val/acc", 190, float("nan"), 1190.0)]
    store.log_points(run.id, points)
    store.update_run(run.id, status="finished")
    (written,) = export_runs(store, ["source"], fmt, tmp_path / "out")
    other = open_store(tmp_path / "other")
    (result,) = import_logs(other, written, fmt, name="back")
    back = other.get_run("back")
    assert sorted(other.series_names(back.id)) == ["train/loss", "val/acc", "val/loss"]
    for name in ("train/loss", "val/loss", "val/acc"):
        steps, values = store.read_series(run.id, name)
        steps2, values2 = other.read_series(back.id, name)
        assert steps2.tolist() == steps.tolist()
        assert np.array_equal(values2, values, equal_nan=True)     # float64 kept exactly, NaN included
    assert back.config == {"lr": 0.01, "depth": 3}
    walls = other.read_walls(back.id, "val/loss")[1]
    offset = 0.5 if fmt == "tensorboard" else 0.0   # a CSV or JSON row has one time: the step's earliest
    assert walls.tolist() == [1000.0 + offset + s for s in range(10, 200, 10)]


def test_a_damaged_event_file_is_named_with_its_offset(tmp_path):
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage-garbage-garbage")
    with pytest.raises(EventFileError, match="byte 0"):
        read_scalars(path)


def test_export_refuses_what_it_cannot_write(tmp_path, store, capsys):
    store.create_run(name="r")
    with pytest.raises(SystemExit) as exit_:                      # argparse: exit 2 with the choices
        main(["export", "r", "--format", "xml", "--out", str(tmp_path), "--store", str(store.root)])
    assert exit_.value.code == 2 and "choose from" in capsys.readouterr().err
    assert main(["export", "nope", "--format", "csv", "--out", str(tmp_path), "--store", str(store.root)]) == 2
    assert "nope" in capsys.readouterr().err


def test_tensorboards_own_reader_reads_our_event_files(tmp_path):
    """What `danlu export --format tensorboard` writes is what TensorBoard shows: scalar-plugin tensors."""
    from tensorboard.backend.event_processing import plugin_event_accumulator
    from tensorboard.util import tensor_util

    from danlu.integrations.eventfile import write_scalars

    write_scalars(tmp_path, {"train/loss": [(1, 0.5, 100.0), (2, 0.1 + 0.2, 101.0)], "val/loss": [(2, 0.75, 101.5)]})
    acc = plugin_event_accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    assert sorted(acc.Tags()["tensors"]) == ["train/loss", "val/loss"]
    assert acc.SummaryMetadata("train/loss").plugin_data.plugin_name == "scalars"
    events = acc.Tensors("train/loss")
    assert [(e.step, e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events] == [
        (1, 100.0, 0.5), (2, 101.0, 0.1 + 0.2)]


def test_parquet_export_is_one_long_table(tmp_path, store):
    import pyarrow.parquet as pq

    run = store.create_run(name="p", config={"lr": 0.5})
    store.log_points(run.id, [("loss", 1, 2.0, 10.0), ("loss", 2, 1.0, 11.0), ("val/loss", 2, 1.5, 11.5)])
    (path,) = export_runs(store, ["p"], "parquet", tmp_path)
    table = pq.read_table(path)
    assert table.column_names == ["series", "step", "value", "wall"]
    rows = sorted(zip(*(table.column(c).to_pylist() for c in table.column_names)))
    assert rows == [("loss", 1, 2.0, 10.0), ("loss", 2, 1.0, 11.0), ("val/loss", 2, 1.5, 11.5)]
    assert json.loads(table.schema.metadata[b"danlu.config"]) == {"lr": 0.5}
