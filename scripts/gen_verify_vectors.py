#!/usr/bin/env python3
"""Print the fixed signature vectors used by the tests in src/verify/tests.rs.

Every vector is produced by the provider's own library (or, where a provider
publishes none, by Python's standard hmac/base64 exactly as the provider's docs
describe), so the Rust verifier is checked against an independent signer rather
than against itself. Inputs are fixed, so the output never changes.

    pip install stripe standardwebhooks svix slack_sdk twilio sendgrid
    python3 scripts/gen_verify_vectors.py

Tested with stripe 16.1.0, standardwebhooks 1.1.0, svix 2.9.1, slack_sdk 3.48.0,
twilio 9.13.0 and sendgrid 6.12.5 (which verifies with cryptography 50.0.2).
"""

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from importlib.metadata import version

import json

import slack_sdk.signature
import standardwebhooks
import stripe
import svix.webhooks
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator


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


def slack_url_verification():
    print(f"# slack_sdk {version('slack_sdk')}: the Events API url_verification, signed with generate_signature")
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    timestamp = "1531420618"
    # The example body from Slack's url_verification event reference.
    body = (
        '{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",'
        '"type":"url_verification"}'
    )
    show("slack.url_verification.body", body)
    show(
        "slack.url_verification.signature",
        slack_sdk.signature.SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body),
    )


def meta_signatures():
    # Meta publishes no library: its "Webhooks" docs describe sha256= + the hex HMAC-SHA256 of
    # the payload keyed with the app secret.
    print("# Meta docs, 'Validating payloads': 'sha256=' + hex(hmac_sha256(app_secret, raw_body))")
    payload = (
        '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
        '{"messaging_product":"whatsapp","messages":[{"from":"16315551234","id":"wamid.ABGGFlA5Fpa","timestamp":'
        '"1504902988","text":{"body":"this is a text message"},"type":"text"}]},"field":"messages"}]}]}'
    )
    show("meta.payload", payload)
    for label, secret in [("primary", "5f2b6d3c8a9e4f10b7c6d5e4f3a2b1c0"), ("rotated", "0c1b2a3f4e5d6c7b01f4e9a8c3d6b2f5")]:
        digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        show(f"meta.{label}.secret", secret)
        show(f"meta.{label}.signature", "sha256=" + digest)


def zoom_signatures():
    # Zoom publishes no library: its "Verify webhook events" docs build
    # v0=hex(hmac_sha256(secret_token, "v0:{x-zm-request-timestamp}:{body}")) and answer the URL
    # validation with hex(hmac_sha256(secret_token, plainToken)).
    print("# Zoom docs, 'Verify webhook events' and 'Validate your webhook endpoint', with Python's hmac")
    timestamp = "1658940994"
    payload = (
        '{"event":"meeting.started","payload":{"account_id":"AAAAAABBBB","object":{"id":"1234567890",'
        '"uuid":"czLF6FFFoQOKgAB99DlDb9g==","topic":"Zoom Meeting"}},"event_ts":1658940994914}'
    )
    validation = '{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}'
    show("zoom.timestamp", timestamp)
    show("zoom.payload", payload)
    show("zoom.validation.payload", validation)
    for label, secret in [("primary", "Fd1kSs0ARKyDq7GmP3jLVQ"), ("rotated", "q7ZxW4yVb2N9rT5uE8aC1d")]:
        show(f"zoom.{label}.secret", secret)
        for name, body in [("event", payload), ("validation", validation)]:
            digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
            show(f"zoom.{label}.{name}.signature", "v0=" + digest)
        token = hmac.new(secret.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
        show(f"zoom.{label}.encryptedToken", token)


def twilio_signatures():
    print(f"# twilio {version('twilio')}: RequestValidator(token).compute_signature / validate")
    # The inputs of twilio-python's own tests (tests/unit/test_request_validator.py).
    validator = RequestValidator("12345")
    uri = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    signature = validator.compute_signature(uri, params)
    assert signature == "RSOYDt4T1cUTdK1PDd93/VVr8B8=", signature
    assert validator.validate(uri, params, signature)
    show("twilio.docs.signature", signature)
    show("twilio.docs.port_443.signature", validator.compute_signature(uri.replace(".com", ".com:443"), params))
    assert validator.validate(uri, params, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    http_uri = uri.replace("https", "http")
    show("twilio.docs.http_port_80.signature", validator.compute_signature(http_uri.replace(".com", ".com:80"), params))
    port_1234 = uri.replace(".com", ".com:1234")
    assert validator.validate(port_1234, params, signature), "the port is removed"
    http_1234 = validator.compute_signature(http_uri.replace(".com", ".com:1234"), params)
    assert http_1234 == "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", http_1234
    show("twilio.docs.http_port_1234.signature", http_1234)

    class MultiDict(dict):
        """Flask's MultiDict, as far as the validator uses it: getall."""

        def __init__(self, pairs):
            super().__init__()
            self.pairs = pairs
            for name, value in pairs:
                self.setdefault(name, value)

        def getall(self, name):
            return [value for field, value in self.pairs if field == name]

    duplicates = MultiDict([("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")])
    signature = validator.compute_signature(uri, duplicates)
    assert signature == "IK+Dwps556ElfBT0I3Rgjkr1wJU=", signature
    show("twilio.duplicates.signature", signature)

    body = '{"property": "value", "boolean": true}'
    body_hash = validator.compute_hash(body)
    assert body_hash == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620", body_hash
    with_body = uri + "&bodySHA256=" + body_hash
    signature = validator.compute_signature(with_body, {})
    assert signature == "a9nBmqA0ju/hNViExpshrM61xv4=", signature
    assert validator.validate(with_body, body, signature)
    show("twilio.json.body", body)
    show("twilio.json.signature", signature)

    # An SMS as Twilio posts it, with a value beyond ASCII, under a second token (rotation) and
    # under a SharedKey signed with HMAC_SHA256.
    sms = {
        "MessageSid": "SM1f0e1d2c3b4a59687766554433221100",
        "AccountSid": "AC00000000000000000000000000000000",
        "From": "+15005550006",
        "To": "+15005550001",
        "Body": "Café ✓ 100% sure & done",
        "NumMedia": "0",
    }
    sms_uri = "https://hooks.example.com/webhooks/twilio"
    show("twilio.sms.params", sms)
    rotated = RequestValidator("f3b1c9e2d4a6b8c0e1f2a3b4c5d6e7f8")
    signature = rotated.compute_signature(sms_uri, sms)
    assert rotated.validate(sms_uri, sms, signature)
    show("twilio.sms.rotated.signature", signature)
    shared = RequestValidator("sharedkey_secret_9d8c7b6a5f4e")
    signature = shared.compute_signature(sms_uri, sms, algorithm="HMAC_SHA256")
    assert shared.validate(sms_uri, sms, signature, algorithm="HMAC_SHA256")
    show("twilio.sms.sha256.signature", signature)


def sendgrid_signatures():
    print(f"# sendgrid {version('sendgrid')}: EventWebhook().verify_signature(payload, signature, timestamp, key)")
    helper = EventWebhook()
    # The vector of SendGrid's own Event Webhook tests (sendgrid-nodejs eventwebhook.spec.js).
    public_key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
    )
    signature = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="
    timestamp = "1588788367"
    payload = json.dumps(
        {"category": "example_payload", "event": "test_event", "message_id": "message_id"}, separators=(",", ":")
    )
    key = helper.convert_public_key_to_ecdsa(public_key)
    assert helper.verify_signature(payload, signature, timestamp, key)
    assert not helper.verify_signature(payload, signature, "1588788368", key)
    # The other key of those tests, which must not verify the vector.
    other_key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
    )
    assert not helper.verify_signature(payload, signature, timestamp, helper.convert_public_key_to_ecdsa(other_key))
    show("sendgrid.docs.other_public_key", other_key)
    show("sendgrid.docs.public_key", public_key)
    show("sendgrid.docs.signature", signature)
    show("sendgrid.docs.timestamp", timestamp)
    show("sendgrid.docs.payload", payload)

    # Key pairs from fixed scalars, so the output never changes; RFC 6979 signatures, which
    # oncehook's signer (also RFC 6979) must reproduce byte for byte.
    events = (
        '[{"email":"ada@example.com","timestamp":1700000000,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>",'
        '"event":"delivered","sg_event_id":"sg_event_id_delivered_1","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}]'
    )
    timestamp = "1700000000"
    show("sendgrid.events.payload", events)
    show("sendgrid.events.timestamp", timestamp)
    for label in ["primary", "rotated"]:
        scalar = int.from_bytes(hashlib.sha256(f"oncehook sendgrid test key {label}".encode()).digest(), "big")
        private = ec.derive_private_key(scalar % (2**256 - 2**224 + 2**192 + 2**96 - 1), ec.SECP256R1())
        public_b64 = base64.b64encode(
            private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode()
        private_b64 = base64.b64encode(
            private.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ).decode()
        der = private.sign((timestamp + events).encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        signature = base64.b64encode(der).decode()
        key = helper.convert_public_key_to_ecdsa(public_b64)
        assert helper.verify_signature(events, signature, timestamp, key)
        show(f"sendgrid.{label}.public_key", public_b64)
        show(f"sendgrid.{label}.private_key", private_b64)
        show(f"sendgrid.{label}.signature", signature)
        if label == "primary":
            # (r, n - s) is the same signature for ECDSA; SendGrid's helper accepts it.
            order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
            r, s = decode_dss_signature(der)
            flipped = base64.b64encode(encode_dss_signature(r, order - s)).decode()
            assert helper.verify_signature(events, flipped, timestamp, key)
            show(f"sendgrid.{label}.high_s" if order - s > order // 2 else f"sendgrid.{label}.low_s", flipped)


if __name__ == "__main__":
    standard_webhooks()
    svix_webhooks()
    stripe_signatures()
    slack_signatures()
    github_signatures()
    shopify_signatures()
    generic_hmac_signatures()
    slack_url_verification()
    meta_signatures()
    zoom_signatures()
    twilio_signatures()
    sendgrid_signatures()
