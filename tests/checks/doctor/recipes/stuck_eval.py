"""Planted bug (S6): a module stays in eval mode during training.

variant=forward: the model's forward switches its dropout/batch-norm block to eval mode.
variant=train_override: a block overrides train() and never leaves eval mode.
variant=recipe_forward: recipe.forward calls model.eval() before every step.
"""

from _doctor_common import digits_split
from torch import nn

import danlu


class Block(nn.Module):
    def __init__(self, c_in, c_out, stuck_train=False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(0.3)
        self.stuck_train = stuck_train

    def train(self, mode=True):
        return super().train(False if self.stuck_train else mode)  # BUG (train_override)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x)).relu())


class Net(nn.Module):
    def __init__(self, variant):
        super().__init__()
        self.variant = variant
        self.block = Block(1, 8, stuck_train=variant == "train_override")
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 64, 10))

    def forward(self, x):
        if self.variant == "forward":
            self.block.eval()  # BUG (forward): e.g. left over from a debugging session
        return self.head(self.block(x))


class StuckEval(danlu.Recipe):
    variant: str = "forward"

    def data(self):
        return digits_split(300, 100)

    def model(self):
        return Net(self.variant)

    def forward(self, model, batch):
        if self.variant == "recipe_forward":
            model.eval()  # BUG (recipe_forward)
        x, y = batch
        return model(x), y
