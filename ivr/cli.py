"""The ``ivr`` command line: ``ivr serve`` (FastAGI), ``ivr agi FLOW`` (process AGI),
``ivr flows`` (list and validate), ``ivr say`` (show the prompts for a value).

Every command takes the store like ``dialer`` (``--db URL`` / ``$DIALER_DB``): one that
exists (``dialer db upgrade`` creates it), upgraded to the current schema on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from dialer.clirun import db_option, run_cli
from dialer.errors import DialerError
from dialer.settings import BankSettings, get_secret, load_settings
from dialer.store import Store, default_db_url, open_store
from dialer.store.db import require_store
from ivr.driver import BlockingAGI, drive_sync
from ivr.engine import Services, run_session
from ivr.fastagi import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PORT,
    FastAGIServer,
)
from ivr.flow import FlowLibrary
from ivr.record import GroupCommitRecorder, StoreRecorder
from ivr.render import bank_vars, can_render, fingerprint, render
from ivr.say import SayKind, say


class IvrApp:
    def __init__(self, db_url: str, flows_dir: Path | None) -> None:
        self.db_url = db_url
        self.flows_dir = flows_dir
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            require_store(self.db_url)  # only `dialer db upgrade` creates a store
            self._store = open_store(self.db_url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def services(self, *, group_commit: bool = False) -> Services:
        """``group_commit``: the server's sessions share transactions (``ivr serve``); a
        process AGI call writes its own."""
        # Verification compares typed digits with keyed hashes: without the key no call can
        # be verified, so refuse to start rather than fail on the first caller.
        get_secret("secret_key")
        recorder = (
            GroupCommitRecorder(self.store, utc_now)
            if group_commit
            else StoreRecorder(self.store, utc_now)
        )
        return Services(
            library=FlowLibrary.load(self.flows_dir),
            recorder=recorder,
            store=self.store,
            clock=utc_now,
            bank=load_settings().bank,  # a call the dialer placed brings its own number
        )


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


pass_ivr = click.make_pass_decorator(IvrApp)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@db_option
@click.option(
    "--flows",
    "flows_dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="IVR_FLOWS",
    default=None,
    help="Flow definitions directory (default config/flows).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, flows_dir: Path | None, verbose: int) -> None:
    """IVR for the bank dialer: FastAGI server, process AGI, flows and prompts."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = app = IvrApp(db_url or default_db_url(), flows_dir)
    ctx.call_on_close(app.close)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--header-timeout", default=DEFAULT_HEADER_TIMEOUT_S, show_default=True, type=float)
@click.option("--max-sessions", default=DEFAULT_MAX_SESSIONS, show_default=True, type=int)
@click.option("--grace", default=10.0, show_default=True, type=float, help="Shutdown grace (s).")
@pass_ivr
def serve(
    app: IvrApp, host: str, port: int, header_timeout: float, max_sessions: int, grace: float
) -> None:
    """Run the FastAGI server (AGI(agi://host:port/<flow>?attempt=<id>)).

    SIGTERM/SIGINT: graceful shutdown. SIGHUP: reload the flows (an invalid file is refused
    and the running flows stay)."""
    services = app.services(group_commit=True)

    async def main() -> None:
        server = FastAGIServer(
            services, host=host, port=port, header_timeout=header_timeout, max_sessions=max_sessions
        )
        await server.start()
        click.echo(
            f"ivr: FastAGI on {host}:{server.port}, flows: {', '.join(sorted(services.library.flows))}",
            err=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)

        def reload() -> None:
            try:
                names = server.reload_flows(app.flows_dir)
                click.echo(f"ivr: flows reloaded: {', '.join(names)}", err=True)
            except DialerError as exc:
                click.echo(f"ivr: reload refused, flows unchanged: {exc}", err=True)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, reload)
        serving = asyncio.create_task(server.serve_forever())
        await stop.wait()
        click.echo(
            f"ivr: shutting down ({server.active} live session(s), grace {grace:g} s)", err=True
        )
        await server.close(grace=grace)
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    asyncio.run(main())


@cli.command(name="agi", context_settings={"ignore_unknown_options": True})
@click.argument("flow")
@click.argument("args", nargs=-1)
@pass_ivr
def agi_command(app: IvrApp, flow: str, args: tuple[str, ...]) -> None:
    """Process AGI over stdin/stdout, for AGI(ivr-agi,FLOW,attempt=ID).

    ``ivr-agi`` is a two-line wrapper in Asterisk's agi-bin that sets DIALER_DB and
    DIALER_SECRET_KEY and runs ``ivr agi "$@"`` (see ivr/README.md)."""
    # Asterisk signals a hang-up with SIGHUP *and* the HANGUP line; the line is what we
    # act on, so the signal must not kill the process before the result is recorded.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    services = app.services()
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd_out, view)
            view = view[n:]

    io = BlockingAGI(lambda n: os.read(fd_in, n), write)
    env = io.environment()
    env = replace(env, script=flow, args=args or env.args)
    outcome = drive_sync(run_session(services, env), io)
    logging.getLogger("ivr.agi").info(
        "session flow=%s status=%s result=%s next=%s",
        outcome.flow,
        outcome.status,
        outcome.result,
        outcome.next,
    )


@cli.command()
@pass_ivr
def flows(app: IvrApp) -> None:
    """List the flows and check that they load (hooks, prompts, right party first)."""
    from ivr.prompts import missing_prompts

    lib = FlowLibrary.load(app.flows_dir)
    problems = 0
    for name, flow in sorted(lib.flows.items()):
        missing = missing_prompts(flow)
        problems += len(missing)
        state = "ok" if not missing else f"missing prompts: {', '.join(missing)}"
        click.echo(f"{name:22} {len(flow.nodes):3d} nodes  {state}")
    if problems:
        raise click.exceptions.Exit(1)


@cli.command(name="install-sounds")
@click.argument(
    "astsounds", type=click.Path(path_type=Path, exists=True, file_okay=False, writable=True)
)
@click.option(
    "--sounds",
    "src",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Rendered prompts (default: the project's sounds/).",
)
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="DIALER_SETTINGS",
    default=None,
    help="Settings YAML whose bank names the prompt bank-name (default config/settings.yaml).",
)
@click.option(
    "--bank-recording",
    "recordings",
    multiple=True,
    metavar="LANG=WAV",
    help="The bank's own recording of its name (8 kHz mono), e.g. zh=/srv/bank-zh.wav.",
)
def install_sounds(
    astsounds: Path, src: Path | None, settings_path: Path | None, recordings: tuple[str, ...]
) -> None:
    """Copy the prompts where Asterisk plays them as dialer/<name>:
    ASTSOUNDS/<lang>/dialer/<name>.wav (e.g. ivr install-sounds /var/lib/asterisk/sounds).

    The prompt bank-name says the bank's name from the settings: the bank's own recording
    (--bank-recording), else the shipped one when it says that name, else one rendered with
    espeak-ng and sox."""
    import shutil

    from ivr.prompts import sounds_dir
    from ivr.say import LANGS

    root = src or sounds_dir()
    own = _recordings(recordings)
    bank = load_settings(settings_path).bank
    count = 0
    try:
        for lang in LANGS:
            dest = astsounds / lang / "dialer"
            dest.mkdir(parents=True, exist_ok=True)
            for wav in sorted((root / lang).glob("*.wav")):
                shutil.copyfile(wav, dest / wav.name)
                count += 1
            how = install_bank_name(root, dest, lang, bank, own.get(lang))
            click.echo(f"{lang}: bank-name {how}")
    except OSError as exc:
        raise click.ClickException(
            f"cannot install the prompts: {exc.filename}: {exc.strerror}"
        ) from None
    click.echo(f"installed {count} prompt(s) under {astsounds}/<lang>/dialer/")


def _recordings(pairs: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for pair in pairs:
        lang, sep, path = pair.partition("=")
        if not sep or lang not in ("zh", "en") or not Path(path).is_file():
            raise click.BadParameter(f"{pair!r}: expected zh=FILE or en=FILE (an existing WAV)")
        out[lang] = Path(path)
    return out


def install_bank_name(
    root: Path,
    dest: Path,
    lang: str,
    bank: BankSettings,
    recording: Path | None,
    can_render: Callable[[], bool] = can_render,
) -> str:
    """Put the prompt ``bank-name`` for ``lang`` in ``dest``; say where it came from."""
    import json
    import shutil

    target = dest / "bank-name.wav"
    if recording is not None:
        shutil.copyfile(recording, target)
        return f"from the bank's recording {recording}"
    name = bank_vars(bank)[lang]["bank"]
    manifest_file = root / "manifest.json"
    manifest = json.loads(manifest_file.read_text("utf-8")) if manifest_file.is_file() else {}
    if manifest.get(f"{lang}/bank-name") == fingerprint(name, lang) and target.is_file():
        return f"says {name} (shipped)"
    if not can_render():
        target.unlink(missing_ok=True)  # never a prompt that names another bank
        raise click.ClickException(
            f"the settings name the bank {name!r} ({lang}) but no prompt says it: give "
            f"--bank-recording {lang}=FILE.wav, or install espeak-ng and sox to render it"
        )
    render(name, lang, target)
    return f"says {name} (rendered from the settings)"


@cli.command(name="say")
@click.argument("kind", type=click.Choice([k.value for k in SayKind]))
@click.argument("value")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
def say_command(kind: str, value: str, lang: str) -> None:
    """Print the prompt names a value is spoken as (e.g. ivr say amount 10010.05)."""
    try:
        prompts = say(kind, value, lang)
    except (ValueError, ArithmeticError) as exc:
        raise click.BadParameter(str(exc), param_hint="VALUE") from None
    click.echo(" ".join(prompts))


def main() -> None:
    run_cli(cli)
