from shared.service import serve

from .settings import NotificationsSettings

serve("services.notifications.app:app", NotificationsSettings())
