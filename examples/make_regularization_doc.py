"""Run the six regularization examples and write docs/REGULARIZATION.md from
docs/REGULARIZATION.md.in with their printed tables and headline figures.

The template's placeholders:
    {{output:NAME}}   everything examples/NAME.py printed
    {{NAME.KEY}}      a headline figure NAME.main() returned
    {{figure:NAME}}   the image docs/figures/NAME.png (or a note when matplotlib is missing)
    {{seconds:NAME}}  how long NAME took, wall clock
    {{machine}}       the machine and versions line
    {{command}}       the command that regenerates the doc
An unknown placeholder is an error, so every number in the doc comes from the run.

    python examples/make_regularization_doc.py
"""
import contextlib
import datetime
import importlib
import io
import os
import platform
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TEMPLATE = os.path.join(ROOT, "docs", "REGULARIZATION.md.in")
OUTPUT = os.path.join(ROOT, "docs", "REGULARIZATION.md")
EXAMPLES = ["l1_l2_elastic_net", "overfitting_small_data", "sparse_representations", "deep_sigmoid_vs_relu",
            "dropout_ensemble", "dropconnect"]
COMMAND = "python examples/make_regularization_doc.py"


def machine_line():
    import numpy
    import sklearn

    import dropkit
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import matplotlib
        plot = f"matplotlib {matplotlib.__version__}"
    except ImportError:
        plot = "no matplotlib"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cpus} CPUs, {platform.system()} {platform.release()}; Python {platform.python_version()}, "
            f"numpy {numpy.__version__}, scikit-learn {sklearn.__version__}, {plot}; dropkit "
            f"{getattr(dropkit, '__version__', '?')} with {dropkit.simd_backend()} kernels on "
            f"{dropkit.get_num_threads()} threads; run {datetime.date.today().isoformat()}")


def run_examples():
    sys.path.insert(0, HERE)
    values = {"machine": machine_line(), "command": COMMAND}
    for name in EXAMPLES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(name)
        out = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            summary = module.main() or {}
        seconds = time.perf_counter() - start
        values[f"output:{name}"] = out.getvalue().strip()
        values[f"seconds:{name}"] = f"{seconds:.0f}"
        figure = os.path.join(ROOT, "docs", "figures", f"{name}.png")
        values[f"figure:{name}"] = (f"![{name}](figures/{name}.png)" if os.path.exists(figure) else
                                    "*(figure not drawn: matplotlib is not installed)*")
        for key, value in summary.items():
            values[f"{name}.{key}"] = str(value)
        print(f"  {seconds:.0f} s", file=sys.stderr, flush=True)
    return values


def fill(template, values):
    def replace(match):
        key = match.group(1).strip()
        if key not in values:
            raise KeyError(f"{TEMPLATE}: unknown placeholder {{{{{key}}}}}")
        return values[key]
    return re.sub(r"\{\{([^{}]+)\}\}", replace, template)


def main():
    with open(TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    values = run_examples()
    text = fill(template, values)
    with open(OUTPUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUTPUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
