"""Planted crash: data() raises (a missing file); checks that need the data are skipped."""

from _doctor_common import small_cnn

import danlu


def read_table(path):
    with open(path) as handle:  # the crash the report must point at
        return handle.read()


class CrashData(danlu.Recipe):
    def data(self):
        read_table("/nonexistent/digits.csv")

    def model(self):
        return small_cnn()
