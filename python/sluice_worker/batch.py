"""The batch worker: runs an Azure ML batch scoring script's ``run(mini_batch)`` (contract §2.5, §5.3).

::

    python -m sluice_worker.batch --entry-script batch_driver.py [--app-root DIR] [--output-dir DIR]
    python -m sluice_worker.batch --mlflow-model [DIR] [--output-dir DIR]

A long-lived process: it boots like the online worker (same ``sys.path`` handling and shims), calls
``init()`` once, prints ``SLUICE_WORKER_READY`` on stdout, then answers mini-batches on a
line-delimited JSON protocol: one request object per line on stdin, one reply object per line on
stdout. User code never reaches that stdout: file descriptor 1 is pointed at stderr (and 0 at
``/dev/null``) before the script is imported, and the protocol uses private copies of the original
descriptors. See "Batch worker" in README.md for the protocol, the row formats and exit codes.

Standard library only; numpy/pandas are touched only when the script's ``run`` returns them or the
MLflow model reads a Parquet file.
"""

import argparse
import csv
import faulthandler
import io
import json
import os
import sys
import time
import traceback

from sluice_worker import stopping
from sluice_worker.app import load_module, log_model_dir
from sluice_worker.worker import (
    EXIT_BOOT,
    EXIT_INTERNAL,
    EXIT_OK,
    READY_LINE,
    _die_with_parent,
    install_shims,
    resolve_paths,
)

ENV_OUTPUT_PATH = "AZUREML_BI_OUTPUT_PATH"

# Separators of an ``append_row`` line (contract §5.3): custom scripts' DataFrame rows are
# space-separated; the MLflow no-code driver writes ``row,prediction,file`` comma-separated.
CUSTOM_SEPARATOR = " "
MLFLOW_SEPARATOR = ","

MAX_ERROR_CHARS = 4000

# pandas.read_csv's default NA strings: these cells are missing values, as Azure's reader (pandas)
# treats them.
CSV_NA_VALUES = frozenset((
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
))
TABULAR_EXTENSIONS = (".csv", ".parquet", ".pqt")


def _eprint(*args):
    print(*args, file=sys.stderr, flush=True)


def describe_error(ex):
    """``"<Type>: <message>"`` (just the type when the message is empty), capped."""
    text = str(ex).strip()
    out = f"{type(ex).__name__}: {text}" if text else type(ex).__name__
    if len(out) > MAX_ERROR_CHARS:
        out = out[: MAX_ERROR_CHARS - 3] + "..."
    return out


# --- the protocol channel ----------------------------------------------------------------------

class Channel:
    """stdin/stdout taken away from user code.

    The original stdin and stdout descriptors are duplicated to private (non-inheritable)
    descriptors; then fd 0 becomes ``/dev/null`` and fd 1 a copy of stderr. Everything the script,
    its C extensions or its child processes print lands on stderr, and nothing can read the
    requests.
    """

    def __init__(self):
        sys.stdout.flush()
        in_fd = os.dup(0)
        out_fd = os.dup(1)
        os.dup2(2, 1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.rfile = os.fdopen(in_fd, "rb", buffering=64 * 1024)
        self.wfile = os.fdopen(out_fd, "wb", buffering=64 * 1024)

    def readline(self):
        return self.rfile.readline()

    def write_line(self, text):
        # A lone surrogate (from undecodable bytes) cannot be UTF-8: it becomes U+FFFD.
        self.wfile.write(text.encode("utf-8", "replace") + b"\n")
        self.wfile.flush()

    def send(self, obj):
        self.write_line(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


# --- run()'s result -> append_row lines ----------------------------------------------------------

class ResultError(TypeError):
    """run() returned something that is neither a list nor a DataFrame: the mini-batch fails."""


def split_csv_records(text):
    """CSV text (``\\n`` line ends) -> its records, without line ends. A quoted field may hold a
    line break; a record ends only where the count of ``"`` so far is even (CSV doubles quotes)."""
    if not text:
        return []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if '"' not in text:
        return lines  # no quoted field, so every line is a record
    records = []
    pending = None
    for line in lines:
        pending = line if pending is None else pending + "\n" + line
        if pending.count('"') % 2 == 0:
            records.append(pending)
            pending = None
    if pending is not None:
        records.append(pending)
    return records


def dataframe_text(df, sep=CUSTOM_SEPARATOR):
    """A DataFrame's rows as one text block (each row ends in ``\n``) and how many there are."""
    if len(df.index) == 0:
        return "", 0
    kwargs = {"sep": sep, "header": False, "index": False}
    try:
        text = df.to_csv(lineterminator="\n", **kwargs)
    except TypeError:  # pandas < 1.5
        text = df.to_csv(line_terminator="\n", **kwargs)
    count = text.count("\n") if '"' not in text else len(split_csv_records(text))
    return text, count


def result_text(result):
    """run()'s return value -> (output text, rows): a DataFrame's rows as ``to_csv`` writes them,
    else one line per element (its ``str()``); every row ends in ``\n``."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(result, pd.DataFrame):
        return dataframe_text(result)
    lines = element_rows(result)
    return "".join(line + "\n" for line in lines), len(lines)


def element_rows(result):
    """A list-like return value -> one output line per element (its ``str()``)."""
    if result is None:
        raise ResultError(
            "run() returned None; it must return a list (one element per processed input) or a pandas DataFrame"
        )
    if isinstance(result, (str, bytes, bytearray, dict)):
        raise ResultError(f"run() must return a list or a pandas DataFrame, not {type(result).__name__}")
    np = sys.modules.get("numpy")
    if np is not None and isinstance(result, np.ndarray):
        items = list(result) if result.ndim else [result.item()]
    else:
        try:
            items = list(result)
        except TypeError:
            raise ResultError(
                f"run() must return a list or a pandas DataFrame, not {type(result).__name__}"
            ) from None
    return [str(item) for item in items]


# --- custom scripts ------------------------------------------------------------------------------

class ScriptRunner:
    """A user's batch driver: ``init()`` once, ``run(mini_batch)`` per mini-batch. The whole
    mini-batch succeeds or fails, as in Azure ML."""

    def __init__(self, module):
        self.module = module
        self.run = module.run
        self.init = module.init

    def score(self, files):
        """-> ``(fields, ok)``: the reply's fields other than id, and whether it succeeded."""
        try:
            result = self.run(list(files))
            text, count = result_text(result)
        except ResultError as ex:
            message = f"TypeError: {ex}"
            _eprint(f"sluice_worker.batch: {message}")
            return {"error": message, "traceback": message}, False
        except Exception as ex:
            tb = traceback.format_exc()
            _eprint("Encountered Exception in run(): " + tb)
            return {"error": describe_error(ex), "traceback": tb}, False
        # One text block rather than a list of rows: the server writes it as it is.
        return {"rows_text": text, "items": count}, True


# --- MLflow models without a script --------------------------------------------------------------

class FileError(Exception):
    """One input file cannot be scored; the others of its mini-batch go on."""


def _mlflow_score():
    from sluice_worker import mlflow_score

    return mlflow_score


def read_csv_text(path):
    """-> (header, rows of strings). Blank lines are skipped; short rows are padded with empty
    (missing) cells; a row with more cells than the header is an error, as with pandas."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = None
            rows = []
            for record in reader:
                if not record:
                    continue  # a blank line
                if header is None:
                    header = [h.strip() for h in record]
                    continue
                if len(record) > len(header):
                    raise FileError(
                        f"line {reader.line_num}: expected {len(header)} fields, saw {len(record)}"
                    )
                if len(record) < len(header):
                    record = record + [""] * (len(header) - len(record))
                rows.append(record)
    except UnicodeDecodeError as ex:
        raise FileError(f"the file is not UTF-8 text: {ex}") from None
    except csv.Error as ex:
        raise FileError(f"the file is not valid CSV: {ex}") from None
    if header is None:
        raise FileError("the file is empty: no header row")
    return header, rows


def _is_na(text):
    return text.strip() in CSV_NA_VALUES


def parse_cell(ms, col, text, row):
    """A CSV cell -> a value of the signature column's type (as pandas' reader with the
    signature's dtypes gives it); raises FileError."""
    t = col.type
    stripped = text.strip()
    try:
        if t in ("double", "float"):
            return None if stripped in CSV_NA_VALUES else float(stripped)
        if t in ("long", "integer"):
            try:
                return int(stripped)
            except ValueError:
                value = float(stripped)
                if value.is_integer():
                    return int(value)
                raise
        if t == "boolean":
            lowered = stripped.lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise ValueError(text)
        if t in ("string", "datetime"):
            return None if text in CSV_NA_VALUES else text
    except ValueError:
        raise FileError(ms._bad_cell(col, row, text).message) from None
    return text  # binary (base64), array/object/any: as read


def generic_cell(text):
    """A CSV cell without a column type: int, else float, else the string; NA -> None."""
    stripped = text.strip()
    if stripped in CSV_NA_VALUES:
        return None
    for kind in (int, float):
        try:
            return kind(stripped)
        except ValueError:
            pass
    return text


def _prediction_list(pred, n):
    """The model's output -> one JSON-able value per input row."""
    ms = _mlflow_score()
    pd = sys.modules.get("pandas")
    np = sys.modules.get("numpy")
    if pd is not None and isinstance(pred, pd.DataFrame):
        if len(pred.columns) == 1:
            values = ms.jsonable(pred.iloc[:, 0])
        else:
            values = ms.jsonable(pred)  # records
    elif pd is not None and isinstance(pred, pd.Series):
        values = ms.jsonable(pred)
    elif np is not None and isinstance(pred, np.ndarray):
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        values = ms.jsonable(pred)
    elif isinstance(pred, dict):
        raise FileError("the model returned named outputs (a dict), which have no single prediction per row")
    else:
        values = ms.jsonable(pred)
    if not isinstance(values, list):
        values = [values]
    if len(values) != n:
        raise FileError(f"the model returned {len(values)} predictions for {n} rows")
    return values


def _cell_text(value):
    """A prediction as pandas' ``to_csv`` writes a cell: NaN/None empty, a row of several values
    as JSON."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


class MlflowRunner:
    """An MLflow model without a scoring script: every file of a mini-batch is read as a table,
    checked against the signature and predicted on its own; a bad file fails alone."""

    def __init__(self, model_dir):
        ms = _mlflow_score()
        environ = dict(os.environ)
        if model_dir:
            environ[ms.ENV_MODEL_PATH] = model_dir
        self.ms = ms
        self.scorer = ms.Scorer.from_environment(environ)
        self.signature = self.scorer.signature
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, delimiter=MLFLOW_SEPARATOR, lineterminator="\n")

    def line(self, cells):
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._writer.writerow(cells)
        return buf.getvalue()[:-1]

    def model_input(self, path):
        """-> (model input, number of rows)."""
        ms = self.ms
        ext = os.path.splitext(path)[1].lower()
        if ext not in TABULAR_EXTENSIONS:
            kind = ext[1:] if ext else "(none)"
            raise FileError(
                f"File type '{kind}' is not supported: an MLflow model without a scoring script reads "
                ".csv, .parquet and .pqt files"
            )
        schema = self.signature.inputs
        columns = schema.columns if schema is not None else None
        if ext == ".csv":
            header, texts = read_csv_text(path)
            if columns is not None:
                by_name = {c.name: c for c in columns} if schema.named else {}
                if schema.named:
                    missing = [c.name for c in columns if c.required and c.name not in header]
                    if missing:
                        raise FileError(
                            f"missing column '{missing[0]}' required by the model signature "
                            f"(the file has columns: {', '.join(header)})"
                        )
                    cols = [by_name.get(h) for h in header]
                else:
                    cols = list(columns) if len(header) == len(columns) else [None] * len(header)
                rows = [
                    [parse_cell(ms, c, t, r) if c is not None else t for c, t in zip(cols, row)]
                    for r, row in enumerate(texts)
                ]
            else:
                pd = ms._optional("pandas") if schema is None else None
                if pd is not None:
                    # No signature: pandas reads the file as Azure's driver does, types inferred.
                    try:
                        frame = pd.read_csv(path)
                    except Exception as ex:
                        raise FileError(f"cannot read the file: {describe_error(ex)}") from None
                    return frame, len(frame.index)
                rows = [[generic_cell(t) for t in row] for row in texts]
            data = ms.Frame(header, rows)
        else:
            pd = ms._optional("pandas")
            if pd is None:
                raise FileError(f"reading {ext} files needs pandas (with pyarrow), which is not installed")
            try:
                frame = pd.read_parquet(path)
            except Exception as ex:
                raise FileError(f"cannot read the file: {describe_error(ex)}") from None
            if schema is None:
                return frame, len(frame.index)
            header = [str(c) for c in frame.columns]
            if columns is not None and schema.named:
                missing = [c.name for c in columns if c.required and c.name not in header]
                if missing:
                    raise FileError(
                        f"missing column '{missing[0]}' required by the model signature "
                        f"(the file has columns: {', '.join(header)})"
                    )
            rows = ms.jsonable(frame.astype(object).where(frame.notna(), None).values.tolist())
            data = ms.Frame(header, rows)
        try:
            return ms.model_input(data, self.signature), len(data.rows)
        except ms.BadInput as ex:
            raise FileError(ex.message) from None

    def score_file(self, path):
        model_in, n = self.model_input(path)
        if n == 0:
            return []
        try:
            pred = self.scorer.model(model_in, None)
        except Exception as ex:
            client_error = self.ms._mlflow_client_error(ex)
            if client_error:
                raise FileError(client_error) from None
            _eprint(f"sluice_worker.batch: the model failed on {path}:\n" + traceback.format_exc())
            text = str(ex).strip().splitlines()[0] if str(ex).strip() else ""
            text = f"{type(ex).__name__}: {text}" if text else type(ex).__name__
            raise FileError(f"The model failed to predict: {text[:500]}") from None
        values = _prediction_list(pred, n)
        name = os.path.basename(path)
        return [self.line([i, _cell_text(v), name]) for i, v in enumerate(values)]

    def score(self, files):
        rows = []
        failed = []
        for path in files:
            try:
                rows.extend(self.score_file(path))
            except FileError as ex:
                message = str(ex)
                _eprint(f"ERROR:sluice_worker.batch:Error processing input file: '{path}'. {message}")
                failed.append({"file": path, "error": message})
            except Exception as ex:  # a bug or an unexpected reader failure: still only this file
                _eprint(f"ERROR:sluice_worker.batch:Error processing input file: '{path}'.\n"
                        + traceback.format_exc())
                failed.append({"file": path, "error": describe_error(ex)})
        if files and len(failed) == len(files):
            # Azure's driver concatenates the files' predictions: with none, run() raises.
            message = "ValueError: No objects to concatenate (every file of the mini-batch failed)"
            return {"error": message, "traceback": message, "failed_files": failed}, False
        return {"rows": rows, "items": len(rows), "failed_files": failed}, True


# --- the worker process --------------------------------------------------------------------------

class _Shutdown(Exception):
    pass


class BatchWorker:
    def __init__(self, runner, channel):
        self.runner = runner
        self.channel = channel
        self.busy = False
        self.stopping = False

    def _on_signal(self, signum, frame):
        if self.stopping:
            return  # a repeat: the first is being acted on
        self.stopping = True
        if not self.busy:
            raise _Shutdown()
        # Busy: finish the mini-batch and send its reply first; the loop checks ``stopping``.

    def serve(self):
        stopping.install(self._on_signal)
        try:
            # Ready only once a SIGTERM would be handled: the scheduler may stop us at once.
            self.channel.write_line(READY_LINE)
            while not self.stopping:
                line = self.channel.readline()
                if not line:
                    break  # EOF: the scheduler closed our stdin
                if not line.strip():
                    continue  # blank lines are ignored
                self.busy = True
                try:
                    reply = self.handle_line(line)
                    if reply is None:
                        break
                    self.channel.send(reply)
                finally:
                    self.busy = False
        except _Shutdown:
            pass
        return EXIT_OK

    def handle_line(self, line):
        """One request line -> its reply, or None for a shutdown request."""
        try:
            request = json.loads(line)
        except ValueError as ex:
            return {"id": None, "ok": False, "bad_request": True, "error": f"BadRequest: not JSON: {ex}"}
        if not isinstance(request, dict):
            return {"id": None, "ok": False, "bad_request": True, "error": "BadRequest: not a JSON object"}
        if request.get("shutdown") is True:
            return None
        rid = request.get("id")
        files = request.get("files")
        output_dir = request.get("output_dir")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            return {"id": rid, "ok": False, "bad_request": True,
                    "error": "BadRequest: 'files' must be a list of file paths"}
        if output_dir is not None and not isinstance(output_dir, str):
            return {"id": rid, "ok": False, "bad_request": True,
                    "error": "BadRequest: 'output_dir' must be a string"}
        if output_dir:
            set_output_dir(output_dir)
        start = time.perf_counter()
        fields, ok = self.runner.score(files)
        seconds = round(time.perf_counter() - start, 6)
        reply = {"id": rid, "ok": ok}
        reply.update(fields)
        reply["files"] = len(files)
        reply["seconds"] = seconds
        return reply


def set_output_dir(path):
    os.environ[ENV_OUTPUT_PATH] = path
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as ex:
        _eprint(f"sluice_worker.batch: cannot create the output folder {path}: {ex}")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m sluice_worker.batch",
        description="Run an Azure ML batch scoring script (or an MLflow model) on mini-batches read from stdin.",
    )
    p.add_argument("--entry-script", default=None,
                   help="the batch scoring script (default: $AZUREML_ENTRY_SCRIPT); relative to the app root "
                        "when one is given, else to the current directory")
    p.add_argument("--app-root", default=os.environ.get("AML_APP_ROOT"),
                   help="code root added to sys.path (default: $AML_APP_ROOT, else the script's folder)")
    p.add_argument("--mlflow-model", nargs="?", const="", default=None, metavar="DIR",
                   help="score an MLflow model without a script; DIR defaults to $SLUICE_MLFLOW_MODEL_PATH, "
                        "else is found under $AZUREML_MODEL_DIR")
    p.add_argument("--output-dir", default=None,
                   help="the job's output folder, set as $AZUREML_BI_OUTPUT_PATH before init()")
    args = p.parse_args(argv)
    if args.mlflow_model is not None:
        if args.entry_script:
            p.error("--entry-script and --mlflow-model exclude each other")
    else:
        args.entry_script = args.entry_script or os.environ.get("AZUREML_ENTRY_SCRIPT")
        if not args.entry_script:
            p.error("--entry-script (or AZUREML_ENTRY_SCRIPT), or --mlflow-model, is required")
    return args


def boot_script(args):
    """Load the batch driver and call init(); on failure print why and exit 3."""
    script, app_root = resolve_paths(args.entry_script, args.app_root)
    os.environ["AML_APP_ROOT"] = app_root
    os.environ.setdefault("AZUREML_ENTRY_SCRIPT", args.entry_script)
    if app_root not in sys.path:
        sys.path.append(app_root)
    source_dir = os.environ.get("AZUREML_SOURCE_DIRECTORY")
    if source_dir:
        sys.path.append(os.path.join(app_root, source_dir))
    install_shims()

    try:
        module = load_module(script)
    except BaseException:
        _eprint(f"Failed to import user script {script} because it raised an unhandled exception")
        _eprint(traceback.format_exc())
        log_model_dir()
        sys.exit(EXIT_BOOT)
    for name in ("init", "run"):
        if not callable(getattr(module, name, None)):
            _eprint(f"Failed to load user script {script}: User script at {script} does not have a "
                    f"{name}() function defined.")
            sys.exit(EXIT_BOOT)
    runner = ScriptRunner(module)
    try:
        runner.init()
    except BaseException:
        _eprint("User's init function failed")
        _eprint("Encountered Exception " + traceback.format_exc())
        log_model_dir()
        sys.exit(EXIT_BOOT)
    return runner


def boot_mlflow(args):
    install_shims()  # mlflow_score imports azureml.contrib.services
    try:
        runner = MlflowRunner(args.mlflow_model)
    except BaseException as ex:
        ms = sys.modules.get("sluice_worker.mlflow_score")
        if ms is not None and isinstance(ex, ms.InitError):
            _eprint(f"Failed to load the MLflow model: {ex}")
        else:
            _eprint("Failed to load the MLflow model")
            _eprint("Encountered Exception " + traceback.format_exc())
        log_model_dir()
        sys.exit(EXIT_BOOT)
    _eprint(f"sluice_worker.batch: MLflow model {runner.scorer.model_path} ({runner.scorer.model.description})")
    return runner


def main(argv=None):
    _die_with_parent()
    faulthandler.enable()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        channel = Channel()
    except OSError as ex:
        _eprint(f"sluice_worker.batch: cannot set up stdin/stdout: {ex}")
        return EXIT_INTERNAL
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    if args.output_dir:
        set_output_dir(os.path.abspath(args.output_dir))
    runner = boot_mlflow(args) if args.mlflow_model is not None else boot_script(args)
    try:
        return BatchWorker(runner, channel).serve()
    except (BrokenPipeError, ConnectionResetError):
        _eprint("sluice_worker.batch: stdout was closed: stopping")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
