"""`python -m resource_service`: serve one replica with settings from the environment."""

from __future__ import annotations

from authcore.config import Settings
from authcore.http import run, serve
from resource_service.app import create_app

DEFAULT_PORT = 8101


def main() -> None:
    settings = Settings.from_env_or_exit("resource_service")
    port = settings.port or DEFAULT_PORT
    run(
        lambda: serve(
            create_app(settings, settings.replica_name(port)),
            settings.host,
            port,
            max_field_size=settings.max_header_bytes,
            max_line_size=settings.max_url_bytes,
            access_log=settings.access_log,
        ),
        settings.log_level,
    )


if __name__ == "__main__":
    main()
