"""`GET /api/deadletters` a page at a time on the running stack: each dead letter may hold 64 KiB,
so the list is paged with a continuation token, and reading it page by page lists each once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests

from tests.e2e.conftest import all_dead_letters, wait_until


def _problem_fields(r: requests.Response) -> list[str]:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    return [e["field"] for e in r.json()["errors"]]


def test_more_dead_letters_than_a_page_are_read_page_by_page_each_once(
        api: str, send_event: Callable[..., str]) -> None:
    tag = uuid.uuid4().hex[:8]
    ours = {f"not an event {tag} #{n} " + "x" * 2_000 for n in range(27)}
    for text in ours:
        send_event("", {}, raw=text)
    wait_until(lambda: ours <= {i["text"] for i in all_dead_letters(api)}, "27 dead letters", timeout=120)

    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": 4}
    while True:
        r = requests.get(f"{api}/deadletters", params=params, timeout=30)
        assert r.status_code == 200, r.text
        pages.append(r.json()["items"])
        if r.json()["continuation"] is None:
            break
        params["continuation"] = r.json()["continuation"]
    assert len(pages) >= 7 and all(len(p) <= 4 for p in pages) and all(len(p) == 4 for p in pages[:-1])
    seen = [i for page in pages for i in page]
    assert max(Counter(i["id"] for i in seen).values()) == 1  # each once
    assert Counter(i["text"] for i in seen if i["text"] in ours) == Counter(ours)  # ours all there, whole
    assert [(i["receivedAt"], i["id"]) for i in seen] == sorted((i["receivedAt"], i["id"]) for i in seen)

    first = requests.get(f"{api}/deadletters", timeout=30).json()
    assert len(first["items"]) == min(20, len(seen)) and (first["continuation"] is None) == (len(seen) <= 20)


def test_a_page_size_or_token_that_is_not_ours_answers_400_naming_it(api: str) -> None:
    for limit in ("0", "51", "-1", "ten", "１０"):
        assert _problem_fields(requests.get(f"{api}/deadletters", params={"limit": limit}, timeout=10)) == ["limit"]
    timeline_token = "eyJyIjoidGx8MDAwMDAwMDAwMDAxIiwicyI6MCwibyI6Im9sZGVzdCJ9"  # a timeline cursor
    for token in ("bm90IG91cnM", timeline_token, "abc\n", ""):
        r = requests.get(f"{api}/deadletters", params={"continuation": token}, timeout=10)
        assert _problem_fields(r) == ["continuation"], token
