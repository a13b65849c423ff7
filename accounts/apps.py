from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import accounts.playground  # noqa: F401  (its log-out receiver ends the session's Playground tokens)
        import config.checks  # noqa: F401  (registers the project's deployment checks)
