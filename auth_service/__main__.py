"""`python -m auth_service`: serve the auth service with settings from the environment."""

from __future__ import annotations

from auth_service.app import create_app
from authcore.config import Settings
from authcore.http import run, serve

DEFAULT_PORT = 8081


def main() -> None:
    settings = Settings.from_env_or_exit("auth_service")
    run(
        lambda: serve(
            create_app(settings),
            settings.host,
            settings.port or DEFAULT_PORT,
            max_field_size=settings.max_header_bytes,
            max_line_size=settings.max_url_bytes,
            access_log=settings.access_log,
        ),
        settings.log_level,
    )


if __name__ == "__main__":
    main()
