"""berth-shim: one small monitor per container (containerd-shim / conmon).

It creates and starts the container through the runtime binary, holds the
container's stdio, writes the json-file log, serves attach and control
sockets and records the exit status, so berthd can restart (or be killed)
without taking containers down. berth.cli.shim parses argv; main.run() does
the work. With --monitor, this process execs berth-monitor (C,
src/berth/monitor/) once the container runs (handoff.py), which speaks the
same protocols from then on; without, loop.Monitor stays. Protocols (all
under SHIM_DIR):

  ready report   one JSON line on the original stdout:
                 {"pid": N, "shim_pid": M} (exit 0) or {"error": "..."} (exit 1)
  attach.sock    client sends {"stdin":b,"stdout":b,"stderr":b}\\n, then
                 receives live output (Docker's 8-byte framing without a tty,
                 raw with one) and its bytes go to the container's stdin
  control.sock   JSON-line requests: resize, wait, ping (see loop.py)
  exit.json      {"exit_code":N,"finished_at":"...","oom_killed":false}

Imports are kept to C modules (_socket, _signal, _json, select) where the
pure-Python wrappers would pull in enum, re, selectors...: the shim's memory
per container is a benchmark figure."""
