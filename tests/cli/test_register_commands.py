"""``finetunekit_register_commands``: every command is a plugin's, an outside package's too.

The outside package is installed the cheap way: its module and a ``*.dist-info`` folder
with ``entry_points.txt`` on a ``sys.path`` entry of a real ``python -m finetunekit``
process, which is what ``pip install`` leaves behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import click
from click.testing import CliRunner

from finetunekit import hookimpl
from finetunekit.cli.main import COMMAND_PLUGINS, make_cli

HELLO_PLUGIN = '''
import click

import finetunekit


@finetunekit.hookimpl
def finetunekit_register_commands(cli):
    @cli.command()
    @click.argument("name", default="world")
    def hello(name):
        """Say hello from an outside package."""
        click.echo(f"hello, {name}")
'''


def _install(site, dist: str, module: str, source: str) -> None:
    """Lay out what ``pip install`` would: the module and its entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[finetunekit]\n{dist} = {module}\n")


def _finetunekit(site, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    # run from the package's site, as a user runs an installed tool: from a source checkout
    # with an editable install, Python 3.11's importlib.metadata sees the checkout's
    # finetunekit.egg-info through the '' path entry and lists almost no entry points
    return subprocess.run([sys.executable, "-m", "finetunekit", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": path},
                          cwd=site)


def _invoke(cli, *args: str):
    return CliRunner().invoke(cli, list(args))


def test_an_installed_package_adds_a_command(tmp_path):
    _install(tmp_path, "finetunekit-hello", "finetunekit_hello", HELLO_PLUGIN)
    ran = _finetunekit(tmp_path, "hello", "plugins")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "hello, plugins\n"
    shown = _finetunekit(tmp_path, "--help")
    assert shown.returncode == 0, shown.stderr
    assert "hello" in shown.stdout and "Say hello from an outside package." in shown.stdout
    assert "run" in shown.stdout  # the built-in commands are still there


def test_an_installed_package_that_fails_to_import_exits_2_naming_it(tmp_path):
    _install(tmp_path, "finetunekit-broken", "finetunekit_broken", "import no_such_module_xyz\n")
    proc = _finetunekit(tmp_path, "--help")
    assert proc.returncode == 2
    assert "finetunekit-broken" in proc.stderr and "no_such_module_xyz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_does_not_import_keras():
    code = ("import sys\nfrom finetunekit.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted({'keras', 'tensorflow', 'jax'} & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_a_plugin_object_adds_a_command_to_its_own_cli_only():
    class Greeter:
        @hookimpl
        def finetunekit_register_commands(self, cli):
            cli.add_command(click.Command("greet", callback=lambda: click.echo("hi")))

    cli = make_cli([Greeter()], entry_points=False)
    result = _invoke(cli, "greet")
    assert result.exit_code == 0, result.output
    assert result.output == "hi\n"
    assert cli.owners["greet"].endswith("Greeter")
    assert {cli.owners[name] for name in ("run", "lr-find", "demo", "bench", "evaluate",
                                          "cache")} == set(
        COMMAND_PLUGINS)
    assert "greet" not in make_cli(entry_points=False).list_commands(None)


def test_a_plugin_whose_registration_raises_exits_2_naming_it():
    class Broken:
        @hookimpl
        def finetunekit_register_commands(self, cli):
            raise RuntimeError("no config file")

    for args in (["--help"], ["list", "--help"]):
        result = _invoke(make_cli([Broken()], entry_points=False), *args)
        assert result.exit_code == 2, result.output
        assert "Plugin 'tests.cli.test_register_commands" in result.output
        assert "Broken' failed in hook 'finetunekit_register_commands'" in result.output
        assert "RuntimeError: no config file" in result.output
        assert "Traceback" not in result.output


def test_a_duplicate_command_name_is_refused_naming_both_plugins():
    class Shadow:
        @hookimpl
        def finetunekit_register_commands(self, cli):
            @cli.command()
            def run():
                """Not the engine's run."""

    result = _invoke(make_cli([Shadow()], entry_points=False), "--help")
    assert result.exit_code == 2, result.output
    assert "Duplicate command name 'run'" in result.output
    assert "Shadow' adds it" in result.output
    assert "plugin 'finetunekit.cli.commands' already did" in result.output
