#!/usr/bin/env python3
"""Print the fixed signature vectors used by the tests in src/verify/tests.rs.

Every vector is produced by the provider's own library (or, where a provider
publishes none, by Python's standard hmac/base64 exactly as the provider's docs
describe), so the Rust verifier is checked against an independent signer rather
than against itself. Inputs are fixed, so the output never changes.

    pip install stripe standardwebhooks svix slack_sdk
    python3 scripts/gen_verify_vectors.py

Tested with stripe 16.1.0, standardwebhooks 1.1.0, svix 2.9.1, slack_sdk 3.47.0.
"""

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from importlib.metadata import version

import slack_sdk.signature
import standardwebhooks
import stripe
import svix.webhooks


def show(name, value):
    print(f"{name} = {value!r}")


def at(unix_seconds):
    return datetime.fromtimestamp(unix_seconds, tz=timezone.utc)


def standard_webhooks():
    print(f"# standardwebhooks {version('standardwebhooks')}: Webhook(secret).sign(msg_id, timestamp, payload)")
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    timestamp = 1614265330
    payload = '{"test": 2432232314}'
    for label, secret in [
        ("primary", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("rotated", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        # The libraries strip an optional whsec_ prefix and tolerate missing padding.
        ("unprefixed_unpadded", "dW5wYWRkZWQtc2VjcmV0LWtleQ"),
    ]:
        show(f"standard.{label}.secret", secret)
        show(f"standard.{label}.signature", standardwebhooks.Webhook(secret).sign(msg_id, at(timestamp), payload))
    show("standard.msg_id", msg_id)
    show("standard.timestamp", timestamp)
    show("standard.payload", payload)

    # A UTF-8 body beyond ASCII, to pin that the body bytes are signed as sent.
    utf8_payload = '{"name":"Café ✓","amount":12}'
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    show("standard.utf8.payload", utf8_payload)
    show("standard.utf8.signature", standardwebhooks.Webhook(secret).sign(msg_id, at(timestamp), utf8_payload))


def svix_webhooks():
    print(f"# svix {version('svix')}: svix.webhooks.Webhook(secret).sign(msg_id, timestamp, payload)")
    msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    timestamp = 1700000000
    payload = '{"type":"invoice.paid","data":{"id":"inv_123"}}'
    for label, secret in [
        ("primary", "whsec_plJ3nmyCDGBKInavdOK15jsl"),
        ("rotated", "whsec_dGhpcy1pcy1hLXNlY29uZC1rZXk="),
    ]:
        show(f"svix.{label}.secret", secret)
        show(f"svix.{label}.signature", svix.webhooks.Webhook(secret).sign(msg_id, at(timestamp), payload))
    show("svix.msg_id", msg_id)
    show("svix.timestamp", timestamp)
    show("svix.payload", payload)


def stripe_signatures():
    print(f"# stripe {version('stripe')}: stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)")
    timestamp = 1711929600
    payload = '{\n  "id": "evt_1PWu2bJ0tyXxTz4lXcjQ0nJm",\n  "object": "event",\n  "type": "payment_intent.succeeded"\n}'
    for label, secret in [
        ("primary", "whsec_test_secret_4eC39HqLyjWDarjtT1zdp7dc"),
        ("rotated", "whsec_rotated_8c1c6f1f0d2e4b5a9d3e"),
    ]:
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
        # The library's own verifier accepts what it generated (tolerance=None skips the clock).
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        show(f"stripe.{label}.secret", secret)
        show(f"stripe.{label}.header", header)
    show("stripe.timestamp", timestamp)
    show("stripe.payload", payload)


def slack_signatures():
    print(f"# slack_sdk {version('slack_sdk')}: SignatureVerifier(secret).generate_signature(timestamp=..., body=...)")
    # The worked example from Slack's "Verifying requests from Slack" page.
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    timestamp = "1531420618"
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signature = slack_sdk.signature.SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", signature

    class FixedClock(slack_sdk.signature.Clock):
        def now(self):
            return float(timestamp)

    verifier = slack_sdk.signature.SignatureVerifier(secret, clock=FixedClock())
    assert verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    show("slack.docs.secret", secret)
    show("slack.docs.timestamp", timestamp)
    show("slack.docs.body", body)
    show("slack.docs.signature", signature)

    rotated = "d1f3a9c0b7e24c58a6f0e2b4c8d9a1e3"
    event_body = '{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention"}}'
    show("slack.rotated.secret", rotated)
    show("slack.rotated.body", event_body)
    show(
        "slack.rotated.signature",
        slack_sdk.signature.SignatureVerifier(rotated).generate_signature(timestamp=timestamp, body=event_body),
    )


def github_signatures():
    print("# GitHub docs, 'Validating webhook deliveries', checked with Python's hmac")
    secret = "It's a Secret to Everybody"
    payload = "Hello, World!"
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    assert digest == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", digest
    show("github.docs.signature", "sha256=" + digest)


def shopify_signatures():
    # Shopify publishes no Python library function for webhooks; its docs' Python
    # example is hmac.new(secret, data, sha256).digest() then base64.b64encode.
    print("# Shopify docs' Python example: base64(hmac_sha256(client_secret, raw_body))")
    payload = '{"id":820982911946154508,"email":"jon@example.com","total_price":"254.98"}'
    show("shopify.payload", payload)
    for label, secret in [("primary", "shpss_1f7e0f8d1c9b4a6e8d2c"), ("rotated", "shpss_9a8b7c6d5e4f3a2b1c0d")]:
        digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
        show(f"shopify.{label}.secret", secret)
        show(f"shopify.{label}.signature", base64.b64encode(digest).decode())


def generic_hmac_signatures():
    print("# Python's hmac/hashlib/base64 for the generic hmac scheme")
    payload = '{"submission_id":"sub_42","email":"ada@example.com"}'
    secret = "forms-secret-1"
    show("hmac.payload", payload)
    show("hmac.secret", secret)
    for algorithm in ["sha256", "sha512", "sha1"]:
        digest = hmac.new(secret.encode(), payload.encode(), getattr(hashlib, algorithm)).digest()
        show(f"hmac.{algorithm}.hex", digest.hex())
        show(f"hmac.{algorithm}.base64", base64.b64encode(digest).decode())


if __name__ == "__main__":
    standard_webhooks()
    svix_webhooks()
    stripe_signatures()
    slack_signatures()
    github_signatures()
    shopify_signatures()
    generic_hmac_signatures()
