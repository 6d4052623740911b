"""Meeting users where they train: other tools' logs in and out (TensorBoard, CSV, JSON lines)."""

from danlu.integrations.logs import EXPORT_FORMATS, IMPORT_FORMATS, ImportedRun, export_runs, import_logs

__all__ = ["import_logs", "export_runs", "ImportedRun", "IMPORT_FORMATS", "EXPORT_FORMATS"]
