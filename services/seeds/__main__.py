from shared.service import serve

from .settings import SeedsSettings

serve("services.seeds.app:app", SeedsSettings())
