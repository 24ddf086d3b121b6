"""``matchnet receive``: the webhook block, Standard Webhooks verification, the receiver over HTTP."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from matchnet.cli import (
    InvalidSignature,
    WebhookReceiver,
    build_parser,
    describe_webhook_body,
    format_webhook,
    serve_webhooks,
    verify_webhook,
    verify_webhook_builtin,
    webhook_secret_key,
)
from services.notifications.domain import new_webhook_secret, webhook_headers, webhook_payload
from shared.events import (
    Envelope,
    EventType,
    Explanation,
    NeedSummary,
    Pairing,
    PairingsProposed,
    SeedSummary,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = new_webhook_secret()
Verifier = Callable[[str | bytes, Mapping[str, str], bytes], None]
VERIFIERS: dict[str, Verifier] = {"standardwebhooks": verify_webhook, "builtin": verify_webhook_builtin}


def pairing(rank: int, score: float, seed_title: str, need_title: str, terms: list[str], fields: list[str]) -> Pairing:
    return Pairing(
        pairing_id=f"pair_{rank}", rank=rank, score=score,
        seed=SeedSummary(id=f"seed_{rank}", title=seed_title, owner_org="北海道工業大学", owner_type="university",
                         prefecture="01", offers=["license"], fields=fields),
        need=NeedSummary(id="need_0190aaaaaaaa1234567890abcdef", title=need_title, prefecture="13",
                         office_id="office-13", company_size="sme", confidentiality="members", fields=fields),
        explanation=Explanation(shared_terms=terms, shared_fields=fields),
    )


def pairings_body(*pairings: Pairing) -> bytes:
    """The body the notifications service sends: the CloudEvent in structured mode."""
    proposed = PairingsProposed(
        office_id="office-13", trigger_kind="need", trigger_id="need_0190aaaaaaaa1234567890abcdef",
        pairings=list(pairings),
    )
    envelope = Envelope.wrap(EventType.pairings_proposed, "/matchnet/matcher", "office-13", proposed)
    return webhook_payload(envelope, pairings).encode()


BODY = pairings_body(
    pairing(2, 0.41, "超音波洗浄ノズル", "工場の排熱を有効活用したい", ["排熱"], []),
    pairing(1, 0.6234, "熱電変換シート", "工場の排熱を有効活用したい", ["熱電変換", "排熱"], ["energy"]),
)


def signed(body: bytes, webhook_id: str = "msg_0190cccccccc", secret: str = SECRET, at: float | None = None,
           ) -> dict[str, str]:
    return webhook_headers(secret, webhook_id, int(time.time() if at is None else at), body)


# ---- the printed block -----------------------------------------------------------------------


def test_a_pairings_event_shows_a_line_per_pairing_in_rank_order() -> None:
    lines = describe_webhook_body(BODY)
    assert lines == [
        "pairings.proposed for office-13, need need_0190aaaaaaaa1234567890abcdef: 2 pairings",
        "1. 0.62  熱電変換シート ← 工場の排熱を有効活用したい  [熱電変換, 排熱 | energy]",
        "2. 0.41  超音波洗浄ノズル ← 工場の排熱を有効活用したい  [排熱 | —]",
    ]


def test_the_block_has_time_webhook_id_status_verdict_and_indented_lines() -> None:
    received_at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    block = format_webhook("msg_1", BODY, received_at=received_at, status=200, verdict="signature ok")
    when = received_at.astimezone().strftime("%H:%M:%S")
    assert block.splitlines() == [
        f"{when}  webhook-id msg_1  → answered 200",
        "  signature ok",
        "  pairings.proposed for office-13, need need_0190aaaaaaaa1234567890abcdef: 2 pairings",
        "  1. 0.62  熱電変換シート ← 工場の排熱を有効活用したい  [熱電変換, 排熱 | energy]",
        "  2. 0.41  超音波洗浄ノズル ← 工場の排熱を有効活用したい  [排熱 | —]",
    ]


def test_an_empty_pairing_list_and_long_titles() -> None:
    assert describe_webhook_body(pairings_body())[0].endswith(": no pairings")
    long = describe_webhook_body(pairings_body(pairing(1, 0.5, "排熱を電気に変える柔軟な熱電変換シート", "n", [], [])))
    assert long[1] == "1. 0.50  排熱を電気に変える柔軟な熱電変… ← n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{\n  "type": "jp.matchnet.need.created.v1",\n  "data": {"title": "\\u6392\\u71b1"}\n}',
         ['{"type":"jp.matchnet.need.created.v1","data":{"title":"排熱"}}']),
        (b'{"type": "jp.matchnet.pairings.proposed.v1", "data": {"pairings": "?"}}',
         ['{"type":"jp.matchnet.pairings.proposed.v1","data":{"pairings":"?"}}']),
        (b"[1, 2]", ["[1,2]"]),
        (b"hello\nworld\n", ["hello", "world"]),
        (b"", ["(empty body)"]),
    ],
    ids=["other-event", "malformed-pairings", "not-an-object", "not-json", "empty"],
)
def test_other_bodies_show_as_compact_json_or_text(body: bytes, expected: list[str]) -> None:
    assert describe_webhook_body(body) == expected


# ---- signatures ------------------------------------------------------------------------------


@pytest.fixture(params=list(VERIFIERS))
def verify(request: pytest.FixtureRequest) -> Verifier:
    return VERIFIERS[request.param]


def test_a_correct_signature_verifies(verify: Verifier) -> None:
    verify(SECRET, signed(BODY), BODY)
    verify(webhook_secret_key(SECRET), signed(BODY), BODY)  # the key as --secret hands it over


def test_a_tampered_body_is_rejected(verify: Verifier) -> None:
    headers = signed(BODY)
    with pytest.raises(InvalidSignature, match="signature"):
        verify(SECRET, headers, BODY.replace(b"0.6234", b"0.9999"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: {**h, "webhook-id": "msg_other"}, "signature"),
        (lambda h: {**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, "signature"),
        (lambda h: {**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) - 1)}, "signature"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing webhook-signature"),
        (lambda h: {**h, "webhook-signature": "v1,not base64!"}, "no well-formed signature"),
        (lambda h: {**h, "webhook-timestamp": "12e8"}, "not a unix time"),
    ],
    ids=["other-id", "other-version", "other-timestamp", "no-signature", "garbage", "timestamp-format"],
)
def test_headers_that_do_not_match_are_rejected(
    verify: Verifier, change: Callable[[dict[str, str]], dict[str, str]], reason: str
) -> None:
    with pytest.raises(InvalidSignature, match=rf"(?i){reason}"):
        verify(SECRET, change(signed(BODY)), BODY)


def test_one_of_several_signatures_may_match(verify: Verifier) -> None:
    mine = signed(BODY)["webhook-signature"]
    others = [signed(BODY, secret=new_webhook_secret())["webhook-signature"] for _ in range(2)]
    verify(SECRET, {**signed(BODY), "webhook-signature": f"{others[0]}  v1,%%%  {mine} {others[1]}"}, BODY)
    with pytest.raises(InvalidSignature):
        verify(SECRET, {**signed(BODY), "webhook-signature": " ".join(others)}, BODY)


@pytest.mark.parametrize("offset_s", [-301 - 60, 301 + 60])
def test_a_timestamp_more_than_five_minutes_off_is_rejected(verify: Verifier, offset_s: int) -> None:
    with pytest.raises(InvalidSignature, match=r"too (old|new)"):
        verify(SECRET, signed(BODY, at=time.time() + offset_s), BODY)
    verify(SECRET, signed(BODY, at=time.time() + (240 if offset_s > 0 else -240)), BODY)


def test_another_secret_does_not_verify(verify: Verifier) -> None:
    with pytest.raises(InvalidSignature):
        verify(new_webhook_secret(), signed(BODY), BODY)


def test_without_the_package_the_builtin_verifier_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "standardwebhooks", None)  # makes the import fail
    verify_webhook(SECRET, signed(BODY), BODY)
    with pytest.raises(InvalidSignature, match="no matching signature"):
        verify_webhook(SECRET, signed(BODY), BODY + b" ")


# ---- arguments -------------------------------------------------------------------------------


def test_receive_defaults_and_options() -> None:
    args = build_parser().parse_args(["receive"])
    assert (args.host, args.port, args.secret, args.status) == ("127.0.0.1", 9000, None, 200)
    args = build_parser().parse_args(["receive", "--port", "0", "--secret", SECRET, "--status", "503"])
    assert (args.port, args.secret, args.status) == (0, webhook_secret_key(SECRET), 503)


@pytest.mark.parametrize(
    "argv",
    [["--secret", "whsec_not base64!"], ["--secret", "whsec_"], ["--status", "99"], ["--port", "70000"]],
)
def test_receive_refuses_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["receive", *argv])
    assert exit_.value.code == 2
    assert "matchnet receive: error: argument" in capsys.readouterr().err


# ---- over HTTP -------------------------------------------------------------------------------


@contextmanager
def running_receiver(
    status: int = 200, secret_key: bytes | None = None
) -> Iterator[tuple[WebhookReceiver, io.StringIO]]:
    out = io.StringIO()
    receiver = WebhookReceiver("127.0.0.1", 0, status=status, secret_key=secret_key, out=out)
    thread = threading.Thread(target=serve_webhooks, args=(receiver,), daemon=True)
    thread.start()
    try:
        yield receiver, out
    finally:
        receiver.shutdown()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_receiver_answers_and_prints_a_signed_webhook() -> None:
    with running_receiver(secret_key=webhook_secret_key(SECRET)) as (receiver, out), \
            httpx.Client(base_url=receiver.url, timeout=10) as client:
        good = client.post("/", content=BODY, headers=signed(BODY, "msg_good"))
        tampered = client.post("/", content=BODY + b" ", headers=signed(BODY, "msg_bad"))
        unsigned = client.post("/hooks/matchnet", content=b'{"hello": "world"}')
    assert (good.status_code, good.content) == (200, b"")
    assert (tampered.status_code, tampered.content) == (401, b"")
    assert unsigned.status_code == 401

    text = out.getvalue()
    port = receiver.server_address[1]
    assert text.startswith(
        f"listening on http://127.0.0.1:{port}/ — register it with POST /v1/subscriptions\n"
        "checking signatures with the standardwebhooks package\n"
        "answering 200 (Ctrl-C to stop)\n"
    )
    assert text.endswith("stopped\n")
    blocks = text.split("webhook-id ")[1:]
    assert len(blocks) == 3
    assert blocks[0].splitlines()[:4] == [
        "msg_good  → answered 200",
        "  signature ok",
        "  pairings.proposed for office-13, need need_0190aaaaaaaa1234567890abcdef: 2 pairings",
        "  1. 0.62  熱電変換シート ← 工場の排熱を有効活用したい  [熱電変換, 排熱 | energy]",
    ]
    assert blocks[1].splitlines()[:2] == [
        "msg_bad  → answered 401",
        "  SIGNATURE INVALID (no matching signature found)",
    ]
    assert blocks[2].splitlines()[:3] == [
        "(none)  → answered 401",
        "  SIGNATURE INVALID (missing webhook-id, webhook-timestamp, webhook-signature)",
        '  {"hello":"world"}',
    ]


def test_without_a_secret_every_post_gets_the_chosen_status() -> None:
    with running_receiver(status=503) as (receiver, out), httpx.Client(base_url=receiver.url, timeout=10) as client:
        answers = [client.post("/", content=BODY, headers=signed(BODY, f"msg_{i}")).status_code for i in range(3)]
        chunked = client.post("/", content=iter([BODY[:10], BODY[10:]]), headers=signed(BODY, "msg_chunked"))
    assert answers == [503, 503, 503] and chunked.status_code == 503
    text = out.getvalue()
    assert "signatures not checked" in text and "signature ok" not in text and "INVALID" not in text
    assert text.count("  1. 0.62  熱電変換シート ← 工場の排熱を有効活用したい") == 4
    assert "webhook-id msg_chunked  → answered 503" in text


def test_matchnet_receive_stops_cleanly_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "matchnet.cli", "receive", "--port", "0", "--secret", SECRET],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:") and first.endswith(
            "/ — register it with POST /v1/subscriptions\n"
        )
        url = first.split()[2]
        answer = httpx.post(url, content=BODY, headers=signed(BODY), timeout=10)
        assert answer.status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "  signature ok\n" in out and out.endswith("stopped\n")
    assert "Traceback" not in err
