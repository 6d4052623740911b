"""The recipe contract (docs/architecture.md): typed hyperparameters, overrides, loading from files."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch.utils.data import TensorDataset

import danlu
from danlu.errors import HyperparameterError, RecipeError
from danlu.recipe import infer_task, load_recipe, load_recipe_class, parse_overrides


class R(danlu.Recipe):
    hidden: int = 8
    name_: str = "x"
    use_bn: bool = False
    kind: str | None = None


def test_inherited_defaults_follow_t5():
    r = R()
    hp = r.hparams()
    assert (hp["seed"], hp["lr"], hp["batch_size"], hp["epochs"], hp["weight_decay"]) == (0, 3e-4, 64, 10, 0.0)
    assert hp["schedule"] == "cosine" and hp["hidden"] == 8
    opt = r.optimizer([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.AdamW)


def test_overrides_and_int_for_float():
    r = R(lr=1, hidden=32)
    assert r.lr == 1.0 and isinstance(r.lr, float) and r.hidden == 32
    assert R().hidden == 8  # instances do not leak into the class


def test_unknown_field_names_valid_fields():
    with pytest.raises(HyperparameterError) as e:
        R(hiden=3)
    msg = str(e.value)
    assert "hiden" in msg and "hidden" in msg and "Valid fields" in msg


@pytest.mark.parametrize("field,value", [("hidden", 1.5), ("hidden", "8"), ("hidden", True), ("lr", "fast"),
                                         ("use_bn", 1), ("schedule", "linear")])
def test_wrong_type_names_field_and_type(field, value):
    with pytest.raises(HyperparameterError) as e:
        R(**{field: value})
    assert f"R.{field} expects" in str(e.value)


def test_coercion_from_strings():
    r = R.from_strings({"lr": "1e-3", "hidden": "1e2", "use_bn": "true", "kind": "none", "schedule": "constant"})
    assert (r.lr, r.hidden, r.use_bn, r.kind, r.schedule) == (1e-3, 100, True, None, "constant")
    with pytest.raises(HyperparameterError, match="R.hidden expects int, got 'abc'"):
        R.from_strings({"hidden": "abc"})
    with pytest.raises(HyperparameterError, match="expects int"):
        R.from_strings({"hidden": "1.5"})


def test_parse_overrides_errors():
    assert parse_overrides(["lr=1e-3", "hidden = 4"]) == {"lr": "1e-3", "hidden": "4"}
    with pytest.raises(HyperparameterError, match="key=value"):
        parse_overrides(["lr"])
    with pytest.raises(HyperparameterError, match="given twice"):
        parse_overrides(["lr=1", "lr=2"])


def test_task_inferred_from_target_dtype():
    x = torch.zeros(4, 2)
    assert infer_task(TensorDataset(x, torch.zeros(4, dtype=torch.long))) == "classification"
    assert infer_task(TensorDataset(x, torch.zeros(4))) == "regression"
    r = R()
    r.resolve_task(TensorDataset(x, torch.zeros(4)))
    out = r.loss(torch.zeros(4, 1), torch.ones(4))  # [B,1] vs [B] reshaped, not broadcast
    assert out.item() == pytest.approx(1.0)


def test_explicit_task_wins_and_bad_task_is_an_error():
    class Reg(danlu.Recipe):
        task = "regression"

    r = Reg()
    assert r.resolve_task(TensorDataset(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))) == "regression"

    class Bad(danlu.Recipe):
        task = "segmentation"

    with pytest.raises(RecipeError, match="classification"):
        Bad().resolve_task(TensorDataset(torch.zeros(2, 1), torch.zeros(2)))


def test_cosine_schedule_with_warmup_and_floor():
    r = R(lr=1.0, warmup_steps=10, min_lr=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = r.scheduler(opt, total_steps=110)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    assert min(lrs[10:]) >= 0.1 - 1e-9 and lrs[-1] == pytest.approx(0.1, abs=1e-3)


def _write(tmp_path, text, name="r.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_single_and_named(tmp_path):
    path = _write(tmp_path, """
        import danlu
        class A(danlu.Recipe):
            width: int = 3
    """)
    assert load_recipe_class(path).__name__ == "A"
    assert load_recipe(path, ["width=5"]).width == 5
    assert load_recipe_class(f"{path}:A").__name__ == "A"


def test_load_errors(tmp_path):
    two = _write(tmp_path, """
        import danlu
        class A(danlu.Recipe): pass
        class B(danlu.Recipe): pass
    """, "two.py")
    with pytest.raises(RecipeError, match=r"2 Recipe subclasses \(A, B\).*two.py:A"):
        load_recipe_class(two)
    with pytest.raises(RecipeError, match="no Recipe subclass named 'C'"):
        load_recipe_class(f"{two}:C")
    none = _write(tmp_path, "x = 1\n", "none.py")
    with pytest.raises(RecipeError, match="defines no danlu.Recipe subclass"):
        load_recipe_class(none)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe_class(tmp_path / "missing.py")
    syntax = _write(tmp_path, "def f(:\n", "syntax.py")
    with pytest.raises(RecipeError, match=r"Syntax error in recipe .*syntax.py:1"):
        load_recipe_class(syntax)
    boom = _write(tmp_path, "import danlu\nraise ValueError('boom')\n", "boom.py")
    with pytest.raises(RecipeError, match=r"boom.py:2.*ValueError: boom"):
        load_recipe_class(boom)
    nodefault = _write(tmp_path, """
        import danlu
        class A(danlu.Recipe):
            width: int
    """, "nodefault.py")
    with pytest.raises(RecipeError, match="has no default"):
        load_recipe_class(nodefault)


def test_imported_recipe_subclasses_do_not_count(tmp_path):
    _write(tmp_path, "import danlu\nclass Base(danlu.Recipe):\n    w: int = 1\n", "base_recipe.py")
    path = _write(tmp_path, "from base_recipe import Base\nclass Child(Base):\n    v: int = 2\n", "child.py")
    cls = load_recipe_class(path)
    assert cls.__name__ == "Child" and set(cls.fields()) >= {"w", "v"}


def test_default_metrics_read_a_tuple_or_dict_output_at_its_prediction():
    """An RNN returns (output, hidden), a Hugging Face model a dict with logits: the default
    accuracy reads the prediction instead of crashing the run on `.argmax` of a tuple."""
    import danlu

    class Plain(danlu.Recipe):
        pass

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    target = torch.tensor([0, 1, 1])
    hidden = (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4))
    plain = Plain().metrics(logits, target)
    assert plain == {"acc": pytest.approx(2 / 3)}
    assert Plain().metrics((logits, hidden), target) == plain
    assert Plain().metrics({"loss": torch.tensor(0.1), "logits": logits}, target) == plain


def test_default_metrics_score_what_they_can_read_and_never_crash_on_what_they_cannot():
    """A mean-and-variance regression head (Gaussian NLL) or binary logits of unknown kind get no
    default metric instead of a crash at the first validation; flattened sequence labels and
    one-hot labels are read; multi-hot labels are not scored by top-1 accuracy."""
    import danlu

    class Regress(danlu.Recipe):
        task = "regression"

    class Classify(danlu.Recipe):
        pass

    y = torch.tensor([[0.5], [1.0], [-1.0]])
    assert Regress().metrics(torch.tensor([0.5, 2.0, -1.0]), y) == {"mae": pytest.approx(1 / 3)}
    assert Regress().metrics(torch.zeros(3, 2), y) == {}                  # mean and log-variance
    seq = torch.zeros(4, 2, 5)                                              # (time, batch, vocabulary)
    seq[..., 3] = 1.0
    labels = torch.tensor([3, 3, 3, 3, 3, 3, 0, 0])                         # flattened, as the loss reads them
    assert Classify().metrics(seq, labels) == {"acc": pytest.approx(0.75)}
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert Classify().metrics(logits, torch.tensor([[1.0, 0.0], [1.0, 0.0]])) == {"acc": pytest.approx(0.5)}
    assert Classify().metrics(logits, torch.tensor([[1.0, 1.0], [0.0, 1.0]])) == {}   # multi-hot labels
    assert Classify().metrics(torch.tensor([1.5, -0.3]), torch.tensor([1.0, 0.0])) == {}   # binary logits
    assert Classify().metrics(logits, torch.tensor([0, 1, 1])) == {}      # labels that do not match
