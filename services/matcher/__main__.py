from shared.service import serve

from .settings import MatcherSettings

serve("services.matcher.app:app", MatcherSettings())
