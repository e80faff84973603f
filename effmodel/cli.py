"""The ``effmodel`` command line (Typer).

Commands live in :mod:`effmodel.commands`, one module each, and are attached
here.  Nothing in this module imports TensorFlow or torch: ``effmodel --help``
and ``effmodel plugins`` must stay fast.  User errors
(:class:`effmodel.errors.EffmodelError`) end in one line on stderr and a
non-zero exit, never a traceback; ``--debug`` (or ``EFFMODEL_DEBUG=1``)
adds the traceback.
"""

from __future__ import annotations

import sys

import typer

from .commands import export, info, new_plugin, pipeline_commands, report, sweep

app = typer.Typer(
    name="effmodel",
    help="When is a converted spiking network cheaper than the ANN it came from? "
    "Train, convert, simulate, count operations, compare costs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _global_options(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback after an error's one-line message (same as EFFMODEL_DEBUG=1).",
    ),
) -> None:
    """Options that apply to every command."""
    if debug:
        import os

        os.environ["EFFMODEL_DEBUG"] = "1"  # read by errors.debug_enabled, also in plugin warnings


app.command("plugins")(info.plugins_command)
app.command("architectures")(info.architectures_command)
app.command("cost-models")(info.cost_models_command)
app.command("train")(pipeline_commands.train_command)
app.command("run")(pipeline_commands.run_command)
app.command("sweep")(sweep.sweep_command)
app.command("report")(report.report_command)
app.command("export")(export.export_command)
app.command("new-plugin")(new_plugin.new_plugin_command)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line."""
    from .errors import EffmodelError, close_open_line, debug_enabled, print_traceback_if_debug

    try:
        app(args=argv, standalone_mode=False)
    except EffmodelError as exc:
        close_open_line()
        print_traceback_if_debug(exc)
        print(f"effmodel: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print("effmodel: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        close_open_line()
        print("effmodel: interrupted; results already stored are complete", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # click usage errors (typer bundles its own click)
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            print(f"effmodel: error: {exc.format_message()}", file=sys.stderr)
            return exc.exit_code
        close_open_line()
        if debug_enabled():
            raise
        message = " ".join(str(exc).split())
        print(f"effmodel: error: unexpected {type(exc).__name__}: {message} "
              "(a bug; rerun with --debug or EFFMODEL_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
