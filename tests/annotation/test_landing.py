"""The queue's ``/``: where a person lands from a printed URL or a port-forward is the review page."""

from __future__ import annotations

import requests


def test_root_redirects_to_the_review_page(start_queue) -> None:
    queue = start_queue()
    landed = requests.get(f"{queue.url}/", timeout=30)
    assert landed.status_code == 200
    assert [r.status_code for r in landed.history] == [303]
    assert landed.url == f"{queue.url}/review"
    assert 'action="/review/login"' in landed.text and 'name="api_key"' in landed.text
    # Signed in (the session cookie), ``/`` lands on the review page itself.
    session = requests.Session()
    session.post(f"{queue.url}/review/login", data={"api_key": queue.owner_key}, timeout=30)
    signed_in = session.get(f"{queue.url}/", timeout=30)
    assert signed_in.url == f"{queue.url}/review" and 'action="/review/logout"' in signed_in.text
