"""Thin trigger adapters: parse the trigger's input, call one use case in `core`, map the result or
the domain error to a response, log. Nothing else lives here."""
