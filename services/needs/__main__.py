from shared.service import serve

from .settings import NeedsSettings

serve("services.needs.app:app", NeedsSettings())
