"""`python -m iot_pipeline.stack up|down|status`: run the native stack for development and CI."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from iot_pipeline.contracts.probes import Health, port_open
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack import pipeline_report
from iot_pipeline.stack.airflow_services import ADMIN_USER, admin_password, password_file
from iot_pipeline.stack.model import Service, StackError, StackPaths
from iot_pipeline.stack.services import native_services
from iot_pipeline.stack.supervisor import ALIVE_STATES, Supervisor, render_config
from iot_pipeline.topics import ensure_topics

LOG_TAIL_LINES = 40


START_MARKER = "==== iot-stack: starting"


def _mark_start(path: Path, name: str) -> None:
    """Append a marker so that a failure report shows only this start's output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{START_MARKER} {name} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')} ====\n")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    starts = [i for i, line in enumerate(text) if line.startswith(START_MARKER)]
    if starts:
        text = text[starts[-1] + 1 :]
    return "\n".join(text[-lines:]) or "(no output)"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _supervisor_for(settings: StackSettings, services: Sequence[Service]) -> Supervisor:
    paths = StackPaths.from_settings(settings)
    supervisor = Supervisor(paths)
    changed = supervisor.write_config(render_config(paths, services, Path.cwd()))
    if not supervisor.is_running():
        supervisor.start_daemon()
        print(f"supervisord started ({_relative(supervisor.config)})")
    elif changed:
        supervisor.reload()
    return supervisor


def _health(service: Service, settings: StackSettings, supervisor: Supervisor) -> Health:
    """A backing service's own probe; for the pipeline's processes, supervisord's view."""
    if service.probe is not None:
        return service.probe(settings)
    state = supervisor.state(service.name)
    if state is None and supervisor.is_running():
        # supervisord runs the stack without it: `make up` ran with it disabled
        return Health(True, "not part of the running stack (disabled at `make up`)", off=True)
    return Health(state == "RUNNING", f"supervisord: {(state or 'not managed').lower()}")


def _start_phase(
    settings: StackSettings, supervisor: Supervisor, services: Sequence[Service]
) -> dict[str, Service]:
    """Start what is not running yet; returns the services to wait for."""
    waiting: dict[str, Service] = {}
    for service in services:
        ours = supervisor.state(service.name) in ALIVE_STATES
        # a backing service someone else runs on its address is reused, never started twice
        probe = service.probe if service.address is not None else None
        if not ours and probe is not None and probe(settings).ok:
            print(f"{service.name:<21} already running outside this stack; reusing it")
            continue
        if ours:
            print(f"{service.name:<21} already running")
        else:
            if service.address is not None and port_open(*service.address):
                host, port = service.address
                raise StackError(
                    f"{host}:{port} is taken by a process that does not answer as "
                    f"{service.name}; stop it or configure another port"
                )
            service.prepare()
            log = supervisor.paths.log_of(service.name)
            _mark_start(log, service.name)
            supervisor.start(service.name)
            print(f"{service.name:<21} starting (log: {_relative(log)})")
        waiting[service.name] = service
    return waiting


def _wait_ready(
    settings: StackSettings, supervisor: Supervisor, waiting: dict[str, Service], started_at: float
) -> bool:
    """Poll until every service is ready; on failure print its log tail and return False."""
    deadline = time.monotonic() + settings.stack_ready_timeout_seconds
    while waiting:
        for name, service in list(waiting.items()):
            health = _health(service, settings, supervisor)
            if health.ok:
                elapsed = time.monotonic() - started_at
                print(f"{name:<21} ready after {elapsed:4.1f}s ({health.detail})")
                del waiting[name]
                continue
            state = supervisor.state(name)
            timed_out = time.monotonic() > deadline
            if state not in ALIVE_STATES or timed_out:
                reason = (
                    f"not ready after {settings.stack_ready_timeout_seconds:.0f}s"
                    if timed_out
                    else f"exited (supervisord state {state})"
                )
                log = supervisor.paths.log_of(name)
                time.sleep(0.5)  # let supervisord drain the process's last output
                print(
                    f"{name:<21} FAILED: {reason}; last probe: {health.detail}\n"
                    f"--- last {LOG_TAIL_LINES} lines of {_relative(log)} ---\n{_tail(log)}\n---",
                    file=sys.stderr,
                )
                return False
        time.sleep(0.25)
    return True


def up(settings: StackSettings) -> int:
    """Start what is not running yet, phase by phase, and wait until everything is ready."""
    started_at = time.monotonic()
    _private(StackPaths.from_settings(settings))
    services = native_services(settings)
    supervisor = _supervisor_for(settings, services)
    for phase in sorted({s.phase for s in services}):
        group = [s for s in services if s.phase == phase]
        if not _wait_ready(
            settings, supervisor, _start_phase(settings, supervisor, group), started_at
        ):
            return 1
        if phase == 0:
            topics = ensure_topics(settings)
            print("topics      " + ", ".join(f"{n} ({state})" for n, state in topics.items()))
    print(
        f"stack ready in {time.monotonic() - started_at:.1f}s; "
        f"logs in {_relative(supervisor.paths.logs)}; stop with `make down`"
    )
    _print_airflow_login(settings, supervisor.paths)
    return 0


def _print_airflow_login(settings: StackSettings, paths: StackPaths) -> None:
    """Where to log in. The password is shown on a terminal only: output that goes to a file
    or a CI log names the file that holds it instead."""
    if not settings.airflow_enabled:
        return
    password = admin_password(paths.root) if sys.stdout.isatty() else None
    where = password or f"in {_relative(password_file(paths.root))}"
    print(
        f"Airflow UI  http://127.0.0.1:{settings.airflow_port}  user {ADMIN_USER}, password {where}"
    )


def _private(paths: StackPaths) -> None:
    """The stack's folders (data, logs, generated secrets) are readable by their owner only."""
    for folder in (paths.root, paths.data, paths.logs, paths.run):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)


def down(settings: StackSettings) -> int:
    """Stop what `up` started (and nothing else); safe to run twice."""
    supervisor = Supervisor(StackPaths.from_settings(settings))
    if not supervisor.is_running():
        print("stack is not running; nothing to stop")
        return 0
    started = time.monotonic()
    services = native_services(settings)
    pipeline_first = [s.name for s in sorted(services, key=lambda s: -s.phase) if s.phase > 0]
    stopped = supervisor.shutdown(first=pipeline_first)
    names = ", ".join(stopped) if stopped else "no services"
    print(f"stopped {names} and supervisord in {time.monotonic() - started:.1f}s")
    return 0


def status(settings: StackSettings) -> int:
    """Print each service's process state, health and memory, then the pipeline's lag, stalls
    and quarantines; exit 0 only if all are ready and no partition is stalled."""
    import psutil

    services = native_services(settings)
    supervisor = Supervisor(StackPaths.from_settings(settings))
    managed = supervisor.is_running()
    restarts = supervisor.restarts() if managed else {}
    print(f"{'service':<21} {'process':<9} {'pid':>7} {'restarts':>8} {'rss MiB':>8}  health")
    total_rss = 0
    all_ok = True
    for service in services:
        state = supervisor.state(service.name) if managed else None
        pid = supervisor.pid(service.name) if state in ALIVE_STATES else 0
        rss = 0
        if pid:
            try:
                process = psutil.Process(pid)
                rss = process.memory_info().rss + sum(
                    child.memory_info().rss for child in process.children(recursive=True)
                )
            except psutil.Error:
                rss = 0
        total_rss += rss
        health = _health(service, settings, supervisor)
        all_ok = all_ok and health.ok
        process_state = "-" if health.off else (state or "external" if health.ok else state or "-")
        mark = "off" if health.off else "ready" if health.ok else "DOWN"
        print(
            f"{service.name:<21} {process_state.lower():<9} {pid or '-':>7} "
            f"{restarts.get(service.name, 0):>8} {rss / 2**20:>8.0f}  "
            f"{mark}: {health.detail}"
        )
    print(f"{'total':<21} {'':<9} {'':>7} {sum(restarts.values()):>8} {total_rss / 2**20:>8.0f}")
    report = pipeline_report.gather(settings)
    now = time.time()
    print("\n".join(pipeline_report.render(report, now)))
    _print_airflow_login(settings, supervisor.paths)
    return 0 if all_ok and not report.stalled(now) else 3


def is_up(settings: StackSettings) -> int:
    """Exit 0 when every service answers (whoever runs it), 1 otherwise; prints nothing."""
    services = native_services(settings)
    supervisor = Supervisor(StackPaths.from_settings(settings))
    return 0 if all(_health(s, settings, supervisor).ok for s in services) else 1


COMMANDS = {"up": up, "down": down, "status": status, "is-up": is_up}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="iot-stack", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    os.umask(0o077)  # what the stack writes (configs, secrets, data) is its owner's only
    try:
        settings = StackSettings()
        return COMMANDS[args.command](settings)
    except ValidationError as exc:
        print(f"invalid configuration (environment or .env):\n{exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
