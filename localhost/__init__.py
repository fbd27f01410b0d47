"""The local host: runs function_app.py's own functions without Core Tools (the run command, `scripts/run`).

Never deployed (`.funcignore`). Modules: `run` (the command), `host` (wires functions to triggers), `indexing`
(the worker's indexing checks), `routing` and `http_server` (HTTP triggers), `change_feed` (Cosmos DB triggers),
`timers` (timer triggers), `invocation` (calling a function, output bindings), `app_settings` (`%SETTING%`
resolution, connections), `services` (the emulators), `dev_signer` (development tokens), `shared_signer` and
`mint` (`scripts/token`), `demo` (demo data).
"""
