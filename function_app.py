"""The Functions entry point: one FunctionApp, one blueprint per trigger family, nothing else.

Nothing here reads a setting or opens a client: an import error would silently drop every function.
"""

import azure.functions as func

from triggers import assignments, fallback, feed, health, lifecycle, txn, users

app = func.FunctionApp()
app.register_functions(assignments.bp)
app.register_functions(health.bp)
app.register_functions(users.bp)
app.register_functions(txn.bp)
app.register_functions(lifecycle.bp)
app.register_functions(feed.bp)
# Last: the catch-all answers only what no other route took (404, or 405 for a known path).
app.register_functions(fallback.bp)
