"""One way for the CLI to call a service: an answer, or an error that says who refused what and why."""

from __future__ import annotations

from typing import Any

import httpx


class ServiceCallError(RuntimeError):
    """A service refused a request (its problem's detail is in the message) or could not be reached."""


def call_service(client: httpx.Client, what: str, method: str, path: str, **kwargs: Any) -> Any:
    """``method path`` on ``client``; the JSON answer, or ServiceCallError naming ``what`` was called."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        raise ServiceCallError(f"{what} at {client.base_url} is not reachable ({error})") from None
    if response.is_error:
        try:
            problem = response.json()
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = response.text[:200]
        raise ServiceCallError(f"{what} answered {response.status_code}: {detail}")
    return response.json()
