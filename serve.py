"""Entry point: ``uvicorn serve:app --host 0.0.0.0 --port 8000`` or ``python serve.py``."""

if __name__ == "__mp_main__":
    # A process that vLLM spawned (its engine core, its workers) imports this file under
    # this name before anything else: tie it to its parent, so none outlives a killed server.
    from qaserve.engine.processes import die_with_parent

    die_with_parent()

from qaserve.app import create_app
from qaserve.process_env import default_offline
from qaserve.settings import get_settings

# The server process, before the engine or a tokenizer loads (they read these at import).
default_offline(multi_node=get_settings().distributed_executor_backend == "ray")
app = create_app()

if __name__ == "__main__":
    import uvicorn

    server = get_settings().server
    uvicorn.run(
        app,
        host=server.host,
        port=server.port,
        log_level=server.log_level,
        timeout_graceful_shutdown=server.shutdown_timeout_seconds,
        timeout_keep_alive=server.keep_alive_seconds,
    )
